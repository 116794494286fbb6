"""The /actions socket through a real WebSocket client speaking Igor's message shapes."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from actions_helpers import IgorClient, actions_config, data_of

from hubtest import eventually


@pytest.fixture
async def hub(tmp_path, in_process_hub):
    async with in_process_hub(actions_config(tmp_path / "cfg")) as h:
        yield h


def scope_of(h):
    return h.hub.face("actions").scope


async def test_stream_of_a_plain_function_then_close(hub):
    c = await IgorClient.connect(hub.ws)
    frames = await c.call("count")
    sid = frames[0]["streamId"]
    assert frames == [
        {"streamId": sid, "data": 0},
        {"streamId": sid, "data": 1},
        {"streamId": sid, "data": 2},
        {"streamId": sid, "close": True},
    ]
    await c.close()


async def test_return_value_is_the_last_data_frame(hub):
    c = await IgorClient.connect(hub.ws)
    frames = await c.call("progress", 3)
    assert data_of(frames) == [{"progress": 0}, {"progress": 1}, {"progress": 2}, {"total": 3}]
    assert frames[-1]["close"] is True
    assert data_of(await c.call("gen")) == [0, 10, 20]
    assert data_of(await c.call("nested.deeper.echo", {"a": [1, "é"]})) == [{"a": [1, "é"]}]
    assert data_of(await c.call("echo")) == []  # None is not sent
    await c.close()


async def test_handler_exception_is_an_error_frame_and_the_connection_stays(hub):
    c = await IgorClient.connect(hub.ws)
    frames = await c.call("fail", 7)
    assert [list(f) for f in frames] == [
        ["streamId", "data"],
        ["streamId", "error", "code"],
        ["streamId", "close"],
    ]
    assert frames[1]["error"] == "boom: 7" and frames[1]["code"] == 500
    assert "traceback" not in frames[1]
    frames = await c.call("fail_sync")
    assert frames[0]["error"] == "sync boom" and frames[-1]["close"]
    frames = await c.call("not_json")
    assert "JSON serializable" in frames[0]["error"]
    frames = await c.call("send_error")
    assert frames[0]["error"] == "soft error" and frames[1]["data"] == "after" and frames[2]["close"]
    assert await c.value("echo", "still open") == "still open"
    await c.close()


async def test_system_exit_in_a_handler_does_not_stop_the_hub(hub):
    c = await IgorClient.connect(hub.ws)
    for action in ("shutdown", "shutdown_async"):
        frames = await c.call(action)
        assert "SystemExit" in frames[0]["error"] and frames[1]["close"]
    assert await c.value("echo", "alive") == "alive"
    await c.close()


async def test_stream_ids_are_per_connection(hub):
    """Igor kept one server-wide table of stream ids: two clients could collide."""
    a, b = await IgorClient.connect(hub.ws), await IgorClient.connect(hub.ws)
    await a.start("slow", 0.3, sid="same")
    await b.start("echo", "b's", sid="same")
    assert data_of(await b.finish("same")) == ["b's"]
    assert data_of(await a.finish("same")) == ["done"]
    await a.close()
    await b.close()


async def test_traceback_only_in_debug_mode(tmp_path, in_process_hub):
    async with in_process_hub(actions_config(tmp_path / "cfg", "debug = true")) as h:
        c = await IgorClient.connect(h.ws)
        frames = await c.call("fail", 1)
        assert "Traceback" in frames[1]["traceback"] and "ValueError: boom: 1" in frames[1]["traceback"]
        await c.close()


async def test_bad_input_gets_error_frames_and_never_closes(hub):
    c = await IgorClient.connect(hub.ws)
    await c.send("{not json")
    assert (await c.protocol_error())["code"] == 400
    await c.send("[1, 2]")
    assert (await c.protocol_error())["code"] == 400
    await c.send({"action": "echo", "data": 1})
    assert await c.protocol_error() == {"error": "No streamId specified", "code": 400}
    await c.send({"streamId": {"x": 1}, "action": "echo"})
    assert (await c.protocol_error())["code"] == 400
    await c.send(b"\x00\x01")
    assert (await c.protocol_error())["code"] == 415
    await c.send({"streamId": "na", "data": 1})
    assert await c.finish("na") == [
        {"streamId": "na", "error": "No action specified", "code": 400},
        {"streamId": "na", "close": True},
    ]
    frames = await c.call("no.such.action")
    assert frames[0]["error"] == 'No handler for action: "no.such.action"' and frames[0]["code"] == 404
    assert frames[1]["close"]
    frames = await c.call("add", {"x": 1, "y": "nope"})
    assert frames[0]["code"] == 422 and "y" in frames[0]["error"]
    assert await c.value("add", {"x": 1, "y": 2}) == 3
    await c.send({"streamId": "i", "action": "introduce_self", "data": {}})
    assert (await c.finish("i"))[0]["error"] == "No client_id for introduce_self action"
    # a stream id already in use is refused without touching the running stream
    await c.start("slow", 0.3, sid="dup")
    await c.start("echo", 1, sid="dup")
    err = await c.protocol_error()
    assert err["code"] == 409
    assert data_of(await c.finish("dup")) == ["done"]
    assert await c.value("echo", "alive") == "alive"
    assert not c.closed.is_set()
    await c.close()


async def test_deeply_nested_json_is_a_400_and_the_connection_stays(hub, caplog):
    c = await IgorClient.connect(hub.ws)
    deep = "[" * 1000 + "]" * 1000
    await c.send('{"streamId": "deep", "action": "echo", "data": ' + deep + "}")
    err = await c.protocol_error()
    assert err["code"] == 400 and "deeper than 64 levels" in err["error"]
    # What is within server.limits.max_json_depth (64 by default) is decoded and echoed back.
    nested = json.loads("[" * 62 + "]" * 62)
    assert await c.value("echo", nested) == nested
    assert not c.closed.is_set()
    await c.close()
    assert "Traceback" not in caplog.text and "RecursionError" not in caplog.text


async def test_oversized_frame_closes_1009(tmp_path, in_process_hub):
    async with in_process_hub(actions_config(tmp_path / "cfg", "max_frame_bytes = 1000")) as h:
        c = await IgorClient.connect(h.ws)
        assert await c.value("echo", "x" * 500) == "x" * 500
        await c.start("echo", "x" * 2000)
        await c.wait_closed()
        assert c.close_code == 1009 and "1000 bytes" in c.close_reason


async def test_concurrent_call_limit_answers_429(tmp_path, in_process_hub):
    async with in_process_hub(actions_config(tmp_path / "cfg", "max_calls_per_client = 2")) as h:
        c = await IgorClient.connect(h.ws)
        a, b = await c.start("forever"), await c.start("forever")
        frames = await c.call("echo", 1)
        assert frames[0]["code"] == 429 and frames[1]["close"]
        await c.send({"streamId": a, "cancel": True})
        await c.finish(a)
        assert await c.value("echo", 2) == 2
        await c.send({"streamId": b, "cancel": True})
        await c.close()


async def test_call_flood_closes_1008(tmp_path, in_process_hub):
    async with in_process_hub(actions_config(tmp_path / "cfg", "max_calls_per_second = 50")) as h:
        c = await IgorClient.connect(h.ws)
        for i in range(500):
            if c.closed.is_set():
                break
            await c.send({"streamId": f"f{i}", "action": "echo", "data": i})
        await c.wait_closed()
        assert c.close_code == 1008 and "flood" in c.close_reason
        other = await IgorClient.connect(h.ws)  # the hub and other clients are unaffected
        assert await other.value("echo", "ok") == "ok"
        await other.close()


async def test_fifty_clients_calling_a_slow_handler_at_once_all_succeed(hub):
    clients = await asyncio.gather(*(IgorClient.connect(hub.ws) for _ in range(50)))
    for action in ("slow", "slow_sync"):
        started = time.perf_counter()
        results = await asyncio.gather(*(c.value(action, 0.5, within=30) for c in clients))
        elapsed = time.perf_counter() - started
        assert results == ["done"] * 50
        assert elapsed < 5, f"{action}: 50 calls of 0.5 s took {elapsed:.1f} s: not concurrent"
    await asyncio.gather(*(c.close() for c in clients))


async def test_one_client_many_concurrent_calls(hub):
    c = await IgorClient.connect(hub.ws)
    started = time.perf_counter()
    sids = [await c.start("slow", 0.4) for _ in range(40)]
    results = await asyncio.gather(*(c.finish(s) for s in sids))
    assert all(data_of(r) == ["done"] for r in results)
    assert time.perf_counter() - started < 4
    await c.close()


async def test_cancel_stops_a_running_handler(hub):
    c = await IgorClient.connect(hub.ws)
    sid = await c.start("forever")
    await eventually(lambda: scope_of(hub).get("forever_started") == 1)
    await c.send({"streamId": sid, "cancel": True})
    assert await c.finish(sid) == [{"streamId": sid, "close": True, "cancelled": True}]
    await eventually(lambda: scope_of(hub).get("forever_cancelled") == 1)
    # a plain function sees StreamClosed on its next send and returns
    from actions_sample_api import EVENTS

    sid = await c.start("forever_sync")
    assert (await c.next(sid))["data"] == "tick"
    await c.send({"streamId": sid, "cancel": True})
    frames = await c.finish(sid)
    assert frames[-1] == {"streamId": sid, "close": True, "cancelled": True}
    assert await asyncio.to_thread(EVENTS["sync_cancel_seen"].wait, 10)
    await c.send({"streamId": "unknown", "cancel": True})  # ignored
    assert await c.value("echo", 1) == 1
    await c.close()


async def test_cancel_right_after_the_call_ends_the_stream(hub):
    """Call and cancel in one batch of frames: the close still comes and the id is free again."""
    c = await IgorClient.connect(hub.ws)
    for _ in range(20):
        await c.ws.send(json.dumps({"streamId": "quick", "action": "forever"}))
        await c.ws.send(json.dumps({"streamId": "quick", "cancel": True}))
        frames = await c.finish("quick")
        assert frames == [{"streamId": "quick", "close": True, "cancelled": True}]
    assert await c.value("echo", "free") == "free"
    assert not hub.hub.face("actions").state.clients[c.session["id"]].calls
    await c.close()


async def test_disconnect_cancels_running_calls(hub):
    c = await IgorClient.connect(hub.ws)
    for _ in range(3):
        await c.start("forever")
    await eventually(lambda: scope_of(hub).get("forever_started") == 3)
    await c.close()
    await eventually(lambda: scope_of(hub).get("forever_cancelled") == 3)


async def test_process_messages_to_all_and_to_one_client(hub):
    a, b = await IgorClient.connect(hub.ws), await IgorClient.connect(hub.ws)
    await a.value("process.say", {"text": "to everyone"})
    for c in (a, b):
        msg = await c.next("announcer")
        assert msg == {"streamId": "announcer", "action": "said", "data": "to everyone"}
    await a.value("process.say", {"text": "only b", "to": b.session["id"]})
    await a.value("process.say", {"text": "marker"})
    assert (await b.next("announcer"))["data"] == "only b"
    assert (await b.next("announcer"))["data"] == "marker"
    assert (await a.next("announcer"))["data"] == "marker"  # a never got "only b"
    assert scope_of(hub)["last_send_ok"] is True
    await a.value("process.say", {"text": "nobody", "to": "no-such-session"})
    await eventually(lambda: scope_of(hub)["last_send_ok"] is False)
    # the Igor-style Thread process broadcasts too
    tick = await a.next("ticker")
    assert tick["action"] == "tick" and tick["data"]["n"] >= 1
    await a.close()
    await b.close()


async def test_scope_is_shared_by_clients_and_processes(hub):
    a, b = await IgorClient.connect(hub.ws), await IgorClient.connect(hub.ws)
    assert await a.value("scope.incr") == 1
    assert await b.value("scope.incr") == 2
    assert await a.value("scope.incr") == 3
    await eventually(lambda: "ticker" in scope_of(hub))
    assert await b.value("scope.get", "ticker") == "ticker"  # written by the Thread process
    assert await a.value("sessions.count") == 2  # the process's view of the sessions
    await a.close()
    await b.close()


async def test_processes_stop_with_the_hub(tmp_path, in_process_hub):
    async with in_process_hub(actions_config(tmp_path / "cfg")) as h:
        processes = h.hub.face("actions").processes
        thread = processes.threads["ticker"]
        task = processes.tasks["announcer"]
        assert thread.is_alive() and not task.done()
    assert task.done()
    await asyncio.to_thread(thread.join, 5)
    assert not thread.is_alive()


async def test_a_partial_actions_config_keeps_the_defaults(tmp_path):
    from roomhub.config import ConfigError, parse_config

    cfg = parse_config({"actions": {"session_timeout": 3}}, base=tmp_path)
    assert cfg.actions.session_timeout == 3 and cfg.actions.max_calls_per_client == 256
    assert cfg.actions.files.enabled is False
    with pytest.raises(ConfigError, match=r"actions\.sesion_timeout: Extra inputs"):
        parse_config({"actions": {"sesion_timeout": 3}}, base=tmp_path)


async def test_an_unloadable_api_stops_the_hub_with_a_clear_error(tmp_path):
    from roomhub.config import parse_config
    from roomhub.hub import Hub, HubError

    for ref, msg in [
        ("nope_module_x:API", "cannot import"),
        ("json:NOPE", "no attribute"),
        ("json", "package.module:API"),
        ("json:loads", "not an ActionsAPI"),
    ]:
        cfg = parse_config({"actions": {"api": ref}, "server": {"data_dir": str(tmp_path)}})
        with pytest.raises(HubError, match=msg):
            Hub(cfg)


async def test_igor_message_shapes_with_a_dict_api(tmp_path):
    """An API given as a plain nested dict of Igor-style handlers (flatten at every level)."""
    from roomhub.actions import ActionsAPI, flatten

    def hello(output, data, **kwargs):
        kwargs["session"]["name"] = data["name"]
        output.send("Hello " + data["name"])

    api = ActionsAPI({"greet": {"en": {"hello": hello}}})
    assert list(api.handlers) == ["greet.en.hello"]
    assert flatten({"a": {"b": {"c": 1}}}, "/") == {"a/b/c": 1}
    assert json.dumps(sorted(api.handlers["greet.en.hello"].kwargs)) == '["scope", "session"]'


async def test_igor_angular_client_path_with_a_client_id(hub):
    """Igor's Angular client connects to ``<serverAddress>/<clientId>``; the id is ignored. It did
    not ask for roomhub's additions: the first frame it gets answers its first call."""
    import websockets

    async with websockets.connect(f"{hub.ws}/actions/client-7") as ws:
        await ws.send(json.dumps({"streamId": "u-1", "action": "echo", "data": {"x": 1}}))
        assert json.loads(await ws.recv()) == {"streamId": "u-1", "data": {"x": 1}}
        assert json.loads(await ws.recv()) == {"streamId": "u-1", "close": True}


async def test_the_embedded_demo_serves_actions(hub_process):
    """``roomhub serve`` with no configuration: the demo's actions, process and file server."""
    import httpx

    h = await asyncio.to_thread(hub_process, None)
    c = await IgorClient.connect(h.ws)
    frames = await c.call("demo.progress", {"steps": 3, "delay": 0})
    assert data_of(frames) == [
        {"step": 1, "of": 3},
        {"step": 2, "of": 3},
        {"step": 3, "of": 3},
        "done: 3 steps",
    ]
    assert (await c.call("demo.progress", {"steps": 0}))[0]["code"] == 422
    assert (await c.value("demo.visit"))["mine"] == 1
    tick = await c.next("counter", within=10)
    assert tick["action"] == "tick" and tick["data"]["sessions"] >= 1
    async with httpx.AsyncClient(base_url=h.base) as http:
        page = await http.get("/actions-demo")
        assert page.status_code == 200 and "/static/actions.js" in page.text
        assert (await http.get("/static/actions.js")).status_code == 200
        assert (await http.put("/actions/files/note.txt", content=b"hi")).status_code == 201
        assert (await http.get("/actions/files/note.txt")).text == "hi"
    await c.close()
    assert await asyncio.to_thread(h.stop) in (0, -15)  # uvicorn re-raises SIGTERM when done
    assert "shutdown complete" in h.log()


async def test_the_door_guards_the_socket(tmp_path, in_process_hub):
    """/actions is served ahead of the router, still behind the origin check and token auth."""
    import websockets

    config = actions_config(tmp_path / "cfg")
    config.write_text('[server.auth]\ntokens = ["s3cret-token"]\n' + config.read_text())
    async with in_process_hub(config) as h:
        for path in ("/actions", "/actions/some-client-id"):
            with pytest.raises(websockets.InvalidStatus) as info:
                await websockets.connect(f"{h.ws}{path}")
            assert info.value.response.status_code == 401
            with pytest.raises(websockets.InvalidStatus) as info:
                await websockets.connect(
                    f"{h.ws}{path}?token=s3cret-token", origin="http://evil.example"
                )
            assert info.value.response.status_code == 403
            ws = await websockets.connect(
                f"{h.ws}{path}", additional_headers={"Authorization": "Bearer s3cret-token"}
            )
            await ws.send(json.dumps({"streamId": "1", "action": "echo", "data": [1, "é"]}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"streamId": "1", "data": [1, "é"]}
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"streamId": "1", "close": True}
            await ws.close()
        with pytest.raises(websockets.InvalidStatus) as info:  # a socket path no face serves
            await websockets.connect(f"{h.ws}/actionsx?token=s3cret-token")
        assert info.value.response.status_code in (403, 404)
