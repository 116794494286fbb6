"""Any hub serves any room: the members of one room spread over three real hub processes sharing a
real Redis. The room is held by one hub (its lease); clients that reached another hub are relayed
to it (roomhub/core/relay.py). Pages: one set of programs, stdin from any member, output to every
member once; a holder killed with SIGKILL: its room re-created on another hub (prologue again)
within a few seconds; fencing: a hub that loses its lease (taken, or Redis gone for the lease
time) closes its members with 1012 and stops the room's programs. Actions: one scope, output to
one client id on another hub, a session resumed through another hub. Widgets: a tab's session
reached from another hub. Backends: a partition's events through the relay."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import httpx
import pytest
import redis.asyncio as redis
import websockets

from actions.actions_helpers import HERE as ACTIONS_DIR
from actions.actions_helpers import IgorClient
from hubtest import ROOT, SRC, HubProcess, close_of, eventually, write_config
from pageclient import PageClient
from services import running, start_redis

LEASE = 1.5  # seconds
PREFIX = "rl"


def cluster_section(redis_url: str) -> str:
    return (f'[cluster]\nredis = "{redis_url}"\nprefix = "{PREFIX}"\nlease_seconds = {LEASE}\n'
            "heartbeat_seconds = 0.2\n")


def pages_config(directory: Path, redis_url: str, log: Path) -> Path:
    """A page whose room runs ``cat`` (each start's pid logged) after a prologue (logged too)."""
    return write_config(directory, f"""
[pages."/p"]
html = "page.html"
[pages."/p".executors.cat]
type = "always"
command = ["sh", "-c", "echo cat $$ >> {log}; exec cat"]
[pages."/p".executors.setup]
type = "prologue"
command = ["sh", "-c", "echo prologue >> {log}"]
{cluster_section(redis_url)}
""")


@pytest.fixture
def three_hubs(tmp_path, hub_process):
    def start(config: Path) -> list[HubProcess]:
        return [hub_process(config, "--data-dir", str(tmp_path / name)) for name in ("a", "b", "c")]
    return start


def lines(log: Path, word: str) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.startswith(word)] if log.exists() else []


async def page_rooms(hub: HubProcess) -> list[str]:
    """The page rooms ``hub`` itself serves (``/api/rooms`` lists every hub's, each naming its hub)."""
    async with httpx.AsyncClient() as http:
        own = (await http.get(f"{hub.base}/api/cluster")).json()["hub"]
        rooms = (await http.get(f"{hub.base}/api/rooms")).json()
    return [r["name"] for r in rooms if r["namespace"] == "/p" and r["hub"] == own]


async def lease_owner(redis_url: str, key: str) -> str | None:
    async with redis.Redis.from_url(redis_url) as client:
        owner = await client.hget(f"{PREFIX}:lease:{key}", "owner")
    return owner.decode() if owner is not None else None


async def run_of(hub: HubProcess, headers: dict[str, str] | None = None) -> str:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{hub.base}/api/cluster", headers=headers)).json()["run"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_page_room_spread_over_three_hubs_runs_one_set_of_programs(tmp_path, redis_url, three_hubs):
    log = tmp_path / "programs.log"
    a_hub, b_hub, c_hub = three_hubs(pages_config(tmp_path / "conf", redis_url, log))
    a = await PageClient.connect(f"{a_hub.ws}/p/ws?roomName=lobby")
    await eventually(lambda: lines(log, "cat"), what="cat started on the first hub reached")
    b = await PageClient.connect(f"{b_hub.ws}/p/ws?roomName=lobby")
    c = await PageClient.connect(f"{c_hub.ws}/p/ws?roomName=lobby")
    await b.stdin("cat", "typed-on-b\n")
    for client in (a, b, c):
        await client.wait_output("cat", b"typed-on-b\n")
    await c.stdin("cat", "typed-on-c\n")
    for client in (a, b, c):
        await client.wait_output("cat", b"typed-on-c\n")
    await b.quiet(0.3)
    await c.quiet(0.3)
    await a.quiet(0.3)
    # one set of programs, on the hub holding the lease; every member got each output once
    assert len(lines(log, "prologue")) == 1 and len(lines(log, "cat")) == 1
    assert await page_rooms(a_hub) == ["lobby"]
    assert await page_rooms(b_hub) == [] and await page_rooms(c_hub) == []
    assert await lease_owner(redis_url, "pages:/p:lobby") == await run_of(a_hub)
    async with httpx.AsyncClient() as http:
        hubs = (await http.get(f"{a_hub.base}/api/cluster")).json()["hubs"]
    assert sorted(h["relayed"] for h in hubs) == [0, 1, 1]  # b's and c's clients, once each
    for client in (a, b, c):
        assert client.output("cat") == b"typed-on-b\ntyped-on-c\n"
    # the holder names each relayed member by the client's own address, not the relaying hub's
    async with httpx.AsyncClient() as http:
        admin = (await http.get(f"{a_hub.base}/api/admin")).json()
    [room] = admin["faces"]["pages"]["rooms"]
    peers = sorted(m["peer"] for m in room["members"])
    assert peers == sorted(f"127.0.0.1:{x.ws.local_address[1]}" for x in (a, b, c))
    for client in (a, b, c):
        await client.close()
    # the room ends on its holder once every member left, and its lease is released
    await eventually(lambda: _none(page_rooms(a_hub)), what="the room torn down on its holder")
    await eventually(lambda: _no_owner(redis_url, "pages:/p:lobby"), what="the lease released")


async def _none(pending) -> bool:
    return not await pending


async def _no_owner(redis_url: str, key: str) -> bool:
    return await lease_owner(redis_url, key) is None


async def test_a_killed_holder_s_page_room_is_re_created_on_another_hub(tmp_path, redis_url, three_hubs):
    log = tmp_path / "programs.log"
    a_hub, b_hub, c_hub = three_hubs(pages_config(tmp_path / "conf", redis_url, log))
    await PageClient.connect(f"{a_hub.ws}/p/ws?roomName=lobby")  # the first: its hub holds the room
    b = await PageClient.connect(f"{b_hub.ws}/p/ws?roomName=lobby")
    c = await PageClient.connect(f"{c_hub.ws}/p/ws?roomName=lobby")
    await b.stdin("cat", "before\n")
    await c.wait_output("cat", b"before\n")
    pid = int(lines(log, "cat")[0].split()[1])
    a_hub.stop(signal.SIGKILL)
    # the relayed clients are told to reconnect
    assert (await close_of(b.ws, 5))[0] == 1012
    assert (await close_of(c.ws, 5))[0] == 1012
    started = asyncio.get_running_loop().time()
    b = await PageClient.connect(f"{b_hub.ws}/p/ws?roomName=lobby")
    c = await PageClient.connect(f"{c_hub.ws}/p/ws?roomName=lobby")
    await eventually(lambda: len(lines(log, "prologue")) == 2, within=LEASE * 4,
                     what="the prologue run again on the new holder")
    await c.stdin("cat", "after\n")
    await b.wait_output("cat", b"after\n")
    await c.wait_output("cat", b"after\n")
    elapsed = asyncio.get_running_loop().time() - started
    assert elapsed < LEASE * 4, elapsed  # within a few seconds: the lease time and a retry
    # one new set of programs, on one of the two hubs left (the killed hub's cat lost its stdin)
    assert len(lines(log, "cat")) == 2
    rooms = [await page_rooms(b_hub), await page_rooms(c_hub)]
    assert sorted(rooms) == [[], ["lobby"]]
    await eventually(lambda: not alive(pid), what="the killed hub's program to end")
    await b.close()
    await c.close()


async def test_a_hub_whose_lease_is_taken_closes_its_members_and_stops_the_programs(
    tmp_path, redis_url, three_hubs
):
    log = tmp_path / "programs.log"
    a_hub, b_hub, _ = three_hubs(pages_config(tmp_path / "conf", redis_url, log))
    a = await PageClient.connect(f"{a_hub.ws}/p/ws?roomName=lobby")
    b = await PageClient.connect(f"{b_hub.ws}/p/ws?roomName=lobby")
    await b.stdin("cat", "hello\n")
    await a.wait_output("cat", b"hello\n")
    pid = int(lines(log, "cat")[0].split()[1])
    # another owner takes the lease (as after an expiry the holder did not see): the holder's
    # next renewal is refused
    async with redis.Redis.from_url(redis_url) as client:
        await client.hset(f"{PREFIX}:lease:pages:/p:lobby", "owner", "someone-else.000000")
    assert await close_of(a.ws, 5) == (1012, "the room's hub changed: reconnect")
    assert (await close_of(b.ws, 5))[0] == 1012
    await eventually(lambda: not alive(pid), what="the room's program stopped")
    assert await page_rooms(a_hub) == []


async def test_a_hub_cut_from_redis_for_the_lease_time_stops_its_rooms(tmp_path):
    """Its own Redis, stopped: the holder cannot renew and must stop before the lease expires."""
    with running("roomhub-redis-fence-", start_redis) as server:
        log = tmp_path / "programs.log"
        config = pages_config(tmp_path / "conf", server.url, log)
        from hubtest import start_hub_process

        hub = start_hub_process(config, tmp_path)
        try:
            a = await PageClient.connect(f"{hub.ws}/p/ws?roomName=lobby")
            await a.stdin("cat", "hello\n")
            await a.wait_output("cat", b"hello\n")
            pid = int(lines(log, "cat")[0].split()[1])
            server.proc.send_signal(signal.SIGSTOP)  # Redis hangs: no renewal answers
            try:
                started = asyncio.get_running_loop().time()
                assert await close_of(a.ws, LEASE * 4) == (1012, "the room's hub changed: reconnect")
                assert asyncio.get_running_loop().time() - started < LEASE  # before it could expire
                await eventually(lambda: not alive(pid), within=LEASE, what="the room's program stopped")
            finally:
                server.proc.send_signal(signal.SIGCONT)
        finally:
            hub.stop()


# -- actions ----------------------------------------------------------------------------------------


def actions_config(directory: Path, redis_url: str) -> Path:
    return write_config(directory, f"""
[actions]
api = "actions_sample_api:API"
pythonpath = ["{ACTIONS_DIR}"]
session_timeout = 30
{cluster_section(redis_url)}
""")


async def test_actions_share_scope_and_reach_a_client_id_on_another_hub(tmp_path, redis_url, three_hubs):
    a_hub, b_hub, c_hub = three_hubs(actions_config(tmp_path / "conf", redis_url))
    a = await IgorClient.connect(a_hub.ws)
    b = await IgorClient.connect(b_hub.ws)
    c = await IgorClient.connect(c_hub.ws)
    # one scope, whichever hub each client reached
    assert [await x.value("scope.incr") for x in (a, b, c, b)] == [1, 2, 3, 4]
    assert await c.value("scope.get", "n") == 4
    # a process's output to one client id reaches that client, on its own hub only
    await a.value("process.say", {"text": "for c", "to": c.session["id"]})
    assert (await c.next("announcer"))["data"] == "for c"
    await b.value("process.say", {"text": "for everyone"})
    for x in (a, b):
        assert (await x.next("announcer"))["data"] == "for everyone"
    assert (await c.next("announcer"))["data"] == "for everyone"  # once: nothing was amplified
    # a session resumed through another hub: its data with it
    await b.value("session.set", {"cart": 3})
    session = b.session
    await b.close()
    again = await IgorClient.connect(c_hub.ws, session=session)
    assert again.session["id"] == session["id"] and again.session.get("resumed") is True
    assert await again.value("session.get") == {"cart": 3}
    for x in (a, c, again):
        await x.close()
    for x in (a, c, again):
        assert x.streams["announcer"].empty(), "an output came twice"
    assert await lease_owner(redis_url, "actions") == await run_of(a_hub)


# -- widgets ----------------------------------------------------------------------------------------


def widgets_config(directory: Path, redis_url: str) -> Path:
    return write_config(directory, f"""
[widgets]
app = "{Path(__file__).with_name('widgets_cluster_app.py')}:app"
{cluster_section(redis_url)}
""")


async def test_a_widgets_session_is_reached_from_other_hubs_and_rebuilt_when_its_hub_dies(
    tmp_path, redis_url, hub_process
):
    from widgets.widgets_helpers import Browser

    runs = tmp_path / "runs.txt"
    config = widgets_config(tmp_path / "conf", redis_url)
    env = {"ROOMHUB_TEST_RUNS": str(runs), "PYTHONPATH": f"{SRC}:{ROOT / 'tests'}"}  # the app's helpers
    a_hub, b_hub, c_hub = (hub_process(config, "--data-dir", str(tmp_path / n), env=env) for n in "abc")
    first = await Browser.open(a_hub.ws)
    await first.wait_for(lambda m: first.of("listen"))
    sid, token = first.session_id, first.token
    await first.close()
    # the tab comes back through hub b: relayed to hub a, where its session lives (replayed)
    tab = await Browser.open(b_hub.ws, sid, token)
    await tab.wait_for(lambda m: tab.of("reconstruct-end"))
    assert tab.messages[0] == {"type": "session-info", "session_id": sid, "token": token}
    assert [c["class"] for c in tab.of("create")] == ["TopLevel", "Label", "Button", "VBox"]
    await tab.callback(3, "activated")
    await tab.wait_for(lambda m: tab.of("call", method="set_text"))
    assert runs.read_text().split() == [sid]  # on_connect ran once: the session was reached
    assert not [m for m in tab.messages if m["type"] == "init"], "the relay passed init twice"
    # a wrong token is refused by the session's hub, through the relay
    wrong = await Browser.open(c_hub.ws, sid, "not-the-token")
    assert await wrong.wait_closed() == 4001
    # the session's hub dies: the tab reconnects through hub c and gets a new session (rebuilt)
    a_hub.stop(signal.SIGKILL)
    assert await tab.wait_closed() == 1012
    rebuilt = await Browser.open(c_hub.ws, sid, token)
    await rebuilt.wait_for(lambda m: rebuilt.of("listen"), timeout=LEASE * 4)
    new_sid = rebuilt.session_id
    assert new_sid is not None and new_sid != sid
    assert runs.read_text().split() == [sid, new_sid]
    await rebuilt.close()
    # the new session is found from any hub
    back = await Browser.open(b_hub.ws, new_sid, rebuilt.token)
    await back.wait_for(lambda m: back.of("reconstruct-end"))
    assert back.messages[0]["session_id"] == new_sid
    await back.close()


# -- backends ---------------------------------------------------------------------------------------


async def test_a_partition_socket_is_relayed_to_the_partition_s_hub(tmp_path, redis_url, three_hubs):
    config = write_config(tmp_path / "conf", f"""
[backends]
{cluster_section(redis_url)}
""")
    a_hub, b_hub, c_hub = three_hubs(config)
    urls = [f"{h.ws}/api/backends/ws?partition=team-1" for h in (a_hub, b_hub, c_hub)]
    sockets = [await websockets.connect(url, open_timeout=10) for url in urls]
    try:
        await eventually(lambda: _partition_members(a_hub, 3), what="three members on hub a")
        for ws in sockets:  # the partition's state on join, from its hub
            assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {
                "type": "Partition", "partitionId": "team-1", "instances": []}
        # a frame from a client on hub c is answered by the partition's hub, to that client only
        await sockets[2].send("{}")
        answer = json.loads(await asyncio.wait_for(sockets[2].recv(), 5))
        assert answer["type"] == "Error" and answer["error"] == "unexpected-frame", answer
        for ws in sockets[:2]:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.3)
    finally:
        for ws in sockets:
            await ws.close()
    assert await lease_owner(redis_url, "backends:team-1") == await run_of(a_hub)


async def _partition_members(hub: HubProcess, count: int) -> bool:
    async with httpx.AsyncClient() as http:
        admin = (await http.get(f"{hub.base}/api/admin")).json()
    rooms = [r for r in admin["faces"]["backends"]["rooms"] if r["name"] == "team-1"]
    return bool(rooms) and len(rooms[0]["members"]) == count


async def test_hub_to_hub_connections_need_the_secret_and_are_never_relayed_again(
    tmp_path, redis_url, hub_process
):
    log = tmp_path / "programs.log"
    config = pages_config(tmp_path / "conf", redis_url, log)
    a_hub, b_hub = (hub_process(config, "--data-dir", str(tmp_path / n)) for n in "ab")
    a = await PageClient.connect(f"{a_hub.ws}/p/ws?roomName=lobby")
    await a.wait_type(None, "joined")
    async with redis.Redis.from_url(redis_url) as client:
        secret = (await client.get(f"{PREFIX}:relay-secret")).decode()
    url = f"{b_hub.ws}/p/ws?roomName=lobby"
    key = {"X-Roomhub-Relay-Key": "pages:/p:lobby"}
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(url, additional_headers={"X-Roomhub-Relay": "guess", **key})
    assert refused.value.response.status_code == 403
    assert json.loads(refused.value.response.body) == {"detail": "bad relay credentials"}
    # the right secret, but hub b does not hold the room: refused, not relayed on to hub a
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(url, additional_headers={"X-Roomhub-Relay": secret, **key})
    assert refused.value.response.status_code == 409
    # a client's own connection naming a key and an address is a client like any other
    spoof = await PageClient.connect(
        url, additional_headers={**key, "X-Roomhub-Relay-Peer": "10.9.9.9:1"})
    await spoof.wait_type(None, "joined")
    async with httpx.AsyncClient() as http:
        admin = (await http.get(f"{a_hub.base}/api/admin")).json()
    peers = {m["peer"] for m in admin["faces"]["pages"]["rooms"][0]["members"]}
    assert "10.9.9.9:1" not in peers and len(peers) == 2
    await spoof.close()
    await a.close()


async def test_actions_sessions_and_scope_resume_on_another_hub_after_the_holder_is_killed(
    tmp_path, redis_url, three_hubs
):
    a_hub, b_hub, c_hub = three_hubs(actions_config(tmp_path / "conf", redis_url))
    a = await IgorClient.connect(a_hub.ws)  # hub a holds the actions room
    b = await IgorClient.connect(b_hub.ws)
    await b.value("session.set", {"cart": 3})
    assert [await a.value("scope.incr"), await b.value("scope.incr")] == [1, 2]
    sessions = a.session, b.session
    # saved right after each call's answer (not before it): wait for the last write to land
    await eventually(lambda: _saved_scope(redis_url, "n", 2), what="the scope saved in Redis")
    a_hub.stop(signal.SIGKILL)
    await b.wait_closed(5)
    assert b.close_code == 1012
    # both come back through hub c; hub b or c takes the room once the lease expired (the API
    # has processes: both claim it at every heartbeat)
    b2 = await IgorClient.connect(c_hub.ws, session=sessions[1], open_timeout=LEASE * 4)
    assert b2.session["id"] == sessions[1]["id"] and b2.session.get("resumed") is True
    assert await b2.value("session.get") == {"cart": 3}
    assert await b2.value("scope.get", "n") == 2
    a2 = await IgorClient.connect(b_hub.ws, session=sessions[0])
    assert a2.session["id"] == sessions[0]["id"] and a2.session.get("resumed") is True
    assert await a2.value("scope.incr") == 3
    # a wrong token still gets a new session
    stranger = await IgorClient.connect(b_hub.ws, session={"id": sessions[1]["id"], "token": "x"})
    assert stranger.session["id"] != sessions[1]["id"]
    for x in (a2, b2, stranger):
        await x.close()
    assert await lease_owner(redis_url, "actions") in {await run_of(b_hub), await run_of(c_hub)}


async def _saved_scope(redis_url: str, key: str, value: object) -> bool:
    async with redis.Redis.from_url(redis_url) as client:
        raw = await client.get(f"{PREFIX}:actions:scope")
    return raw is not None and json.loads(raw).get(key) == value
