"""Sessions through the real socket: resume inside the timeout, reaped after it, exactly once."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets
from actions_helpers import IgorClient, actions_config

from hubtest import eventually

TIMEOUT = 1.0


@pytest.fixture
async def hub(tmp_path, in_process_hub):
    async with in_process_hub(actions_config(tmp_path / "cfg", f"session_timeout = {TIMEOUT}")) as h:
        yield h


def store_of(h):
    return h.hub.face("actions").state.sessions


async def test_welcome_gives_a_session_id_and_token(hub):
    c = await IgorClient.connect(hub.ws)
    assert set(c.session) == {"id", "token", "resumed", "timeout"}
    assert c.session["resumed"] is False and c.session["timeout"] == TIMEOUT
    assert len(c.session["token"]) >= 32
    await c.close()


async def test_resume_inside_the_timeout_keeps_the_session(hub):
    a = await IgorClient.connect(hub.ws)
    assert await a.value("session.set", {"name": "Oskar"}) == {"name": "Oskar"}
    await a.close()
    b = await IgorClient.connect(hub.ws, session=a.session)
    assert b.session["resumed"] is True and b.session["id"] == a.session["id"]
    assert await b.value("session.get") == {"name": "Oskar"}
    assert store_of(hub).reaped_count == 0
    await b.close()


async def test_after_the_timeout_the_session_is_reaped_once(hub):
    store = store_of(hub)
    a = await IgorClient.connect(hub.ws)
    await a.value("session.set", {"k": 1})
    await a.close()
    await eventually(lambda: a.session["id"] not in store, within=TIMEOUT + 5)
    assert store.reaped_count == 1
    b = await IgorClient.connect(hub.ws, session=a.session)
    assert b.session["resumed"] is False and b.session["id"] != a.session["id"]
    assert await b.value("session.get") == {}
    await asyncio.sleep(TIMEOUT * 1.2)  # nothing else may be reaped for that session
    assert store.reaped_count == 1
    await b.close()


async def test_reaped_on_the_timer_of_the_last_disconnect(hub):
    """Igor deleted a session on its first timer even after a reconnect: the last one counts."""
    store = store_of(hub)
    loop = asyncio.get_running_loop()
    a = await IgorClient.connect(hub.ws)
    await a.value("session.set", {"k": "v"})
    await a.close()
    first_detach = loop.time()
    await asyncio.sleep(TIMEOUT * 0.6)
    b = await IgorClient.connect(hub.ws, session=a.session)
    assert b.session["resumed"] is True
    await b.close()
    second_detach = loop.time()
    await asyncio.sleep(first_detach + TIMEOUT * 1.3 - loop.time())  # past the first timer
    assert a.session["id"] in store and store[a.session["id"]] == {"k": "v"}
    await eventually(lambda: a.session["id"] not in store, within=TIMEOUT + 5)
    assert loop.time() - second_detach >= TIMEOUT * 0.95
    assert store.reaped_count == 1


async def test_a_wrong_token_gets_a_new_session(hub):
    a = await IgorClient.connect(hub.ws)
    await a.value("session.set", {"secret": 1})
    forged = {"id": a.session["id"], "token": "x" * 32}
    b = await IgorClient.connect(hub.ws, session=forged)
    assert b.session["resumed"] is False and b.session["id"] != a.session["id"]
    assert await b.value("session.get") == {}
    await a.close()
    await b.close()


async def test_introduce_self_resumes_with_the_token(hub):
    a = await IgorClient.connect(hub.ws)
    await a.value("session.set", {"who": "a"})
    await a.close()
    b = await IgorClient.connect(hub.ws)
    fresh = b.session["id"]
    await b.send(
        {
            "streamId": "intro",
            "action": "introduce_self",
            "data": {"client_id": a.session["id"], "token": a.session["token"]},
        }
    )
    assert await b.finish("intro") == [
        {
            "streamId": "intro",
            "data": {"clientId": a.session["id"], "sessionId": a.session["id"], "resumed": True},
        },
        {"streamId": "intro", "close": True},
    ]
    assert await b.value("session.get") == {"who": "a"}
    assert fresh not in store_of(hub)  # the unused fresh session is dropped
    await b.close()


async def test_introduce_self_without_the_token_cannot_take_a_session(hub):
    a = await IgorClient.connect(hub.ws)
    await a.value("session.set", {"who": "a"})
    b = await IgorClient.connect(hub.ws)
    await b.send({"streamId": "i", "action": "introduce_self", "data": {"client_id": a.session["id"]}})
    frames = await b.finish("i")
    assert frames[0]["code"] == 400 and "token" in frames[0]["error"] and frames[1]["close"]
    assert await b.value("session.get") == {}
    assert await a.value("session.get") == {"who": "a"}
    await a.close()
    await b.close()


async def test_resuming_a_live_session_closes_the_other_connection_4009(hub):
    a = await IgorClient.connect(hub.ws)
    await a.value("session.set", {"n": 1})
    b = await IgorClient.connect(hub.ws, session=a.session)
    assert b.session["resumed"] is True
    await a.wait_closed()
    assert a.close_code == 4009
    assert await b.value("session.get") == {"n": 1}
    await b.close()


async def test_process_output_reaches_a_resumed_client(hub):
    a = await IgorClient.connect(hub.ws)
    sid = a.session["id"]
    await a.close()
    b = await IgorClient.connect(hub.ws, session=a.session)
    await b.value("process.say", {"text": "you again", "to": sid})
    assert (await b.next("announcer"))["data"] == "you again"
    await b.close()


async def test_session_limit_closes_1013(tmp_path, in_process_hub):
    async with in_process_hub(actions_config(tmp_path / "cfg", "max_sessions = 2")) as h:
        a, b = await IgorClient.connect(h.ws), await IgorClient.connect(h.ws)
        async with websockets.connect(f"{h.ws}/actions") as ws:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 1013 and "session limit" in ws.close_reason
        await a.close()
        await b.close()


# -- Igor's own clients: they do not ask for roomhub's additions -----------------------------------


async def igor_frames(ws, count: int, within: float = 10) -> list[dict]:
    """The next ``count`` frames an Igor client gets, but the sample API's ticker's."""
    frames: list[dict] = []
    while len(frames) < count:
        msg = json.loads(await asyncio.wait_for(ws.recv(), within))
        if msg.get("streamId") != "ticker":
            frames.append(msg)
    return frames


async def test_an_igor_client_gets_no_session_frame(hub):
    """Igor's clients read the first frame as the answer to their first call."""
    async with websockets.connect(f"{hub.ws}/actions") as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert "session" not in first
        await ws.send(json.dumps({"streamId": "1", "action": "echo", "data": "DATA"}))
        assert await igor_frames(ws, 2) == [
            {"streamId": "1", "data": "DATA"},
            {"streamId": "1", "close": True},
        ]


async def test_an_unknown_additions_version_is_refused_1008(hub):
    async with websockets.connect(f"{hub.ws}/actions?roomhub=2") as ws:
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 1008 and "roomhub='2'" in ws.close_reason


async def test_introduce_self_names_an_igor_client_for_processes(hub):
    """As in Igor: the connection takes the client id (no answer), and a process's
    ``send(..., client_id=ID)`` reaches it; the session data stays its own."""
    sender = await IgorClient.connect(hub.ws)
    await sender.value("session.set", {"who": "sender"})
    async with websockets.connect(f"{hub.ws}/actions") as ws:
        intro = {"streamId": "i", "action": "introduce_self", "data": {"client_id": "CLIENT_1"}}
        await ws.send(json.dumps(intro))
        await ws.send(json.dumps({"streamId": "g", "action": "session.get"}))
        # no answer to introduce_self: the first frames are the session.get call's
        assert await igor_frames(ws, 2) == [{"streamId": "g", "data": {}}, {"streamId": "g", "close": True}]
        await sender.value("process.say", {"text": "for CLIENT_1", "to": "CLIENT_1"})
        said = {"streamId": "announcer", "action": "said", "data": "for CLIENT_1"}
        assert await igor_frames(ws, 1) == [said]
        assert hub.hub.face("actions").state.scope["last_send_ok"] is True
        await ws.send(json.dumps({"streamId": "s", "action": "session.set", "data": {"cart": 2}}))
        await igor_frames(ws, 2)
        # Igor's processes found a client's session under its client id: so do roomhub's
        assert await sender.value("sessions.data", "CLIENT_1") == {"cart": 2}
    await eventually(lambda: "CLIENT_1" not in hub.hub.face("actions").state.named)
    await sender.value("process.say", {"text": "gone", "to": "CLIENT_1"})
    await eventually(lambda: hub.hub.face("actions").state.scope["last_send_ok"] is False)
    await sender.close()


async def test_introduce_self_answers_a_client_that_asked(hub):
    c = await IgorClient.connect(hub.ws)
    await c.send({"streamId": "i", "action": "introduce_self", "data": {"client_id": "desk-2"}})
    assert await c.finish("i") == [
        {"streamId": "i", "data": {"clientId": "desk-2", "sessionId": c.session["id"], "resumed": False}},
        {"streamId": "i", "close": True},
    ]
    await c.value("process.say", {"text": "hi desk", "to": "desk-2"})
    assert (await c.next("announcer"))["data"] == "hi desk"
    await c.close()


async def test_a_client_id_gives_no_session_data_without_the_token(hub):
    """Igor handed the session of an id to whoever introduced itself with it: here the data
    needs the token, and the id of a live session is not a free name."""
    a = await IgorClient.connect(hub.ws)
    await a.send({"streamId": "i", "action": "introduce_self", "data": {"client_id": "shared-name"}})
    await a.finish("i")
    await a.value("session.set", {"secret": "a"})
    b = await IgorClient.connect(hub.ws)
    await b.send({"streamId": "i", "action": "introduce_self", "data": {"client_id": "shared-name"}})
    await b.finish("i")
    assert await b.value("session.get") == {}
    await b.value("process.say", {"text": "to the name", "to": "shared-name"})
    assert (await b.next("announcer"))["data"] == "to the name"  # the last to take a name holds it
    await b.send({"streamId": "j", "action": "introduce_self", "data": {"client_id": a.session["id"]}})
    frames = await b.finish("j")
    assert frames[0]["code"] == 400 and "token" in frames[0]["error"]
    assert await b.value("session.get") == {} and await a.value("session.get") == {"secret": "a"}
    await a.close()
    await b.close()


async def echo_calls(client: IgorClient, count: int) -> float:
    """Seconds for ``count`` echo calls sent at once to be answered."""
    started = time.monotonic()
    sids = [await client.start("echo", i) for i in range(count)]
    for sid in sids:
        await client.finish(sid, within=30)
    return time.monotonic() - started


async def test_a_session_keeps_its_receive_budget_across_reconnects(tmp_path, in_process_hub):
    # No limit per connection: the session's bucket (the actions client's room) is the limit.
    limits = "[server.limits]\nreceive_rate = 0\nroom_receive_rate = 50\nroom_receive_burst = 50\n" \
        "receive_throttled_close = 0\n"
    async with in_process_hub(actions_config(tmp_path / "cfg", "session_timeout = 30", limits)) as h:
        a = await IgorClient.connect(h.ws)
        # 50 at once, then 50 per second: 100 calls take about a second.
        assert await echo_calls(a, 100) >= 0.8
        await a.close()
        # A reconnect resuming the session finds its bucket as it left it, not a fresh burst.
        b = await IgorClient.connect(h.ws, session=a.session)
        assert b.session["resumed"] is True
        assert await echo_calls(b, 30) >= 0.4
        await b.close()
