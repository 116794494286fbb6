"""Rooms and executors through real WebSocket clients against a real hub on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from pathlib import Path

import httpx
import pytest
import websockets

from hubtest import eventually, write_config
from pageclient import PageClient, monitor_contents

BASE = """
[server]
log_level = "debug"
[server.limits]
max_clients_per_room = {max_clients}
max_rooms_per_namespace = {max_rooms}
send_queue_frames = {queue}
max_json_depth = {json_depth}

[pages."/p"]
html = "page.html"
grace_period = {grace}

[pages."/p".executors.cat]
type = "always"
command = ["cat"]
restart_delay = 0.05

[pages."/p".executors.log]
type = "prologue"
command = ["sh", "-c", "echo prologue >> {logfile}"]

[pages."/p".executors.bye]
type = "epilogue"
command = ["sh", "-c", "sleep {epilogue_sleep}; echo epilogue >> {logfile}"]

[pages."/other"]
html = "page.html"
[pages."/other".executors.cat]
type = "always"
command = ["cat"]
"""


def config(tmp_path: Path, extra: str = "", **kw: object) -> Path:
    values = {"max_clients": 50, "max_rooms": 100, "queue": 1024, "grace": 0.0,
              "logfile": tmp_path / "events.log", "epilogue_sleep": 0, "json_depth": 64}
    values.update(kw)
    return write_config(tmp_path / "cfg", BASE.format(**values) + extra)


def events(tmp_path: Path) -> list[str]:
    try:
        return (tmp_path / "events.log").read_text().split()
    except FileNotFoundError:
        return []


async def test_broadcast_reaches_members_without_echo_and_never_another_room(tmp_path, in_process_hub):
    async with in_process_hub(config(tmp_path)) as hub:
        a = await PageClient.connect(f"{hub.ws}/p/ws?roomName=r1")
        b = await PageClient.connect(f"{hub.ws}/p/ws?roomName=r1")
        c = await PageClient.connect(f"{hub.ws}/p/ws?roomName=r2")
        other = await PageClient.connect(f"{hub.ws}/other/ws?roomName=r1")
        for client in (a, b, c, other):
            await client.wait_type(None, "joined")
        await a.stdin("cat", "hello-room-1\n")
        await a.wait_output("cat", b"hello-room-1")
        await b.wait_output("cat", b"hello-room-1")
        # The client's own frame is never relayed: B sees the program's output, not A's frame.
        assert not any("stdin" in f["message"] for f in b.frames)
        await c.quiet(0.3)
        await other.quiet(0.1)
        assert b"hello-room-1" not in c.output("cat")
        assert b"hello-room-1" not in other.output("cat")
        for client in (a, b, c, other):
            await client.close()


async def test_concurrent_first_joins_create_the_room_once(tmp_path, in_process_hub):
    async with in_process_hub(config(tmp_path)) as hub:
        clients = await asyncio.gather(
            *(PageClient.connect(f"{hub.ws}/p/ws?roomName=same") for _ in range(10))
        )
        await asyncio.gather(*(c.wait_type(None, "joined") for c in clients))
        assert events(tmp_path) == ["prologue"]
        async with httpx.AsyncClient() as http:
            rooms = (await http.get(f"{hub.base}/api/rooms")).json()
        assert [(r["name"], r["clients"]) for r in rooms] == [("same", 10)]
        await asyncio.gather(*(c.close() for c in clients))
        await eventually(lambda: events(tmp_path) == ["prologue", "epilogue"])


async def test_join_during_teardown_waits_and_gets_a_fresh_room(tmp_path, in_process_hub):
    async with in_process_hub(config(tmp_path, epilogue_sleep=0.6)) as hub:
        first = await PageClient.connect(f"{hub.ws}/p/ws?roomName=t")
        await first.wait_type(None, "joined")
        await first.close()
        await asyncio.sleep(0.1)  # the teardown (a 0.6 s epilogue) is under way
        second = await PageClient.connect(f"{hub.ws}/p/ws?roomName=t")
        await second.wait_type(None, "joined")
        assert events(tmp_path) == ["prologue", "epilogue", "prologue"]
        await second.stdin("cat", "fresh\n")
        await second.wait_output("cat", b"fresh")
        await second.close()


async def test_grace_period_keeps_an_empty_room(tmp_path, in_process_hub):
    async with in_process_hub(config(tmp_path, grace=0.5)) as hub:
        first = await PageClient.connect(f"{hub.ws}/p/ws?roomName=g")
        await first.wait_type(None, "joined")
        await first.stdin("cat", "before\n")
        await first.wait_output("cat", b"before")
        await first.close()
        await asyncio.sleep(0.1)
        back = await PageClient.connect(f"{hub.ws}/p/ws?roomName=g")
        # Same room: the scrollback of the earlier visit is there, no second prologue.
        await back.wait_output("cat", b"before")
        assert events(tmp_path) == ["prologue"]
        await back.close()
        await eventually(lambda: events(tmp_path) == ["prologue", "epilogue"], within=5)


async def test_late_joiner_gets_scrollback_once_state_and_file(tmp_path, in_process_hub):
    extra = """
[pages."/p".executors.job]
type = "once"
command = ["sh", "-c", "echo job-output; exit 4"]
[pages."/p".executors.notes]
type = "file"
path = "notes.txt"
initial = "initial notes"
"""
    async with in_process_hub(config(tmp_path, extra)) as hub:
        a = await PageClient.connect(f"{hub.ws}/p/ws?roomName=late")
        await a.stdin("cat", "early-line\n")
        await a.wait_output("cat", b"early-line")
        await a.send("job")
        done = await a.wait_type("job", "finished")
        assert done["message"]["exitCode"] == 4
        b = await PageClient.connect(f"{hub.ws}/p/ws?roomName=late")
        await b.wait_output("cat", b"early-line")
        await b.wait_output("job", b"job-output")
        state = await b.wait_type("job", "state")
        assert state["message"] == {"type": "state", "kind": "once", "running": False, "exitCode": 4}
        notes = await b.wait_for(lambda f: f["executor"] == "notes" and monitor_contents(f) is not None)
        assert monitor_contents(notes) == b"initial notes"
        await a.close()
        await b.close()


async def test_bad_frames_get_error_frames_and_the_connection_stays(tmp_path, in_process_hub):
    async with in_process_hub(config(tmp_path)) as hub:
        c = await PageClient.connect(f"{hub.ws}/p/ws?roomName=bad")
        await c.wait_type(None, "joined")
        cases = [
            ("not json", "bad-json"),
            (json.dumps([1, 2]), "bad-frame"),
            (json.dumps({"message": 1}), "bad-frame"),
            (json.dumps({"executor": "nope", "message": None}), "unknown-executor"),
            (json.dumps({"executor": "cat", "message": {"stdin": "***"}}), "bad-message"),
            (json.dumps({"executor": "cat", "message": {"size": {"cols": -1, "rows": 5}}}), "bad-message"),
            (json.dumps({"executor": "log", "message": None}), "not-accepted"),
            (b"\x00binary", "binary-unsupported"),
        ]
        for frame, code in cases:
            await c.ws.send(frame)
            error = await c.wait_for(lambda f, code=code: f["message"].get("code") == code)
            assert error["message"]["type"] == "error" and error["message"]["message"]
        await c.stdin("cat", "still-alive\n")
        await c.wait_output("cat", b"still-alive")
        await c.close()


async def test_deeply_nested_json_is_bad_json_and_the_connection_stays(tmp_path, in_process_hub, caplog):
    notes = """
[pages."/p".executors.notes]
type = "file"
path = "notes.txt"
"""
    async with in_process_hub(config(tmp_path, notes, json_depth=8)) as hub:
        c = await PageClient.connect(f"{hub.ws}/p/ws?roomName=deep")
        await c.wait_type(None, "joined")
        await c.ws.send("[" * 1000 + "]" * 1000)
        error = await c.wait_for(lambda f: f["message"].get("type") == "error")
        assert error["message"]["code"] == "bad-json"
        assert "deeper than 8 levels" in error["message"]["message"]
        # server.limits.max_json_depth is the bound: 8 levels pass, 9 do not.
        await c.send("cat", {"stdin": base64.b64encode(b"ok\n").decode(), "pad": [[[[[[1]]]]]]})
        await c.wait_output("cat", b"ok")
        await c.send("cat", {"stdin": "", "pad": [[[[[[[1]]]]]]]})
        error = await c.wait_for(lambda f: f["message"].get("code") == "bad-json" and f is not error)
        # A monitor line of a file executor is JSON too.
        line = b'{"contents": "eA==", "x": ' + b"[" * 1000 + b"]" * 1000 + b"}\n"
        await c.send("notes", {"stdin": base64.b64encode(line).decode()})
        error = await c.wait_for(lambda f: f["executor"] == "notes" and f["message"].get("type") == "error")
        assert error["message"]["code"] == "bad-message"
        await c.stdin("cat", "still-alive\n")
        await c.wait_output("cat", b"still-alive")
        await c.close()
    assert "Traceback" not in caplog.text and "RecursionError" not in caplog.text


@pytest.mark.parametrize(
    "query", ["", "?roomName=", "?roomName=../x", "?roomName=" + "a" * 200, "?roomName=a%20b"]
)
async def test_bad_room_names_get_http_400(tmp_path, in_process_hub, query):
    async with in_process_hub(config(tmp_path)) as hub:
        with pytest.raises(websockets.InvalidStatus) as info:
            await websockets.connect(f"{hub.ws}/p/ws{query}", open_timeout=5)
        assert info.value.response.status_code == 400
        assert b"room name" in info.value.response.body


async def test_room_and_client_limits_close_with_a_reason(tmp_path, in_process_hub):
    async with in_process_hub(config(tmp_path, max_clients=2, max_rooms=1)) as hub:
        a = await PageClient.connect(f"{hub.ws}/p/ws?roomName=one")
        b = await PageClient.connect(f"{hub.ws}/p/ws?roomName=one")
        await a.wait_type(None, "joined")
        await b.wait_type(None, "joined")
        for url in (f"{hub.ws}/p/ws?roomName=one", f"{hub.ws}/p/ws?roomName=two"):
            extra = await PageClient.connect(url)
            refused = await extra.wait_type(None, "error")
            assert refused["message"]["code"] == "room-refused"
            with pytest.raises(websockets.ConnectionClosed):
                await extra.wait_for(lambda f: False, timeout=5)
            assert extra.ws.close_code == 1013
            assert "limit" in extra.ws.close_reason or "full" in extra.ws.close_reason
        await a.close()
        await b.close()


async def test_oversize_frame_closes_with_1009(tmp_path, in_process_hub):
    async with in_process_hub(config(tmp_path)) as hub:
        c = await PageClient.connect(f"{hub.ws}/p/ws?roomName=big", max_size=None)
        await c.wait_type(None, "joined")
        await c.ws.send("x" * (2 * 1024 * 1024))
        with pytest.raises(websockets.ConnectionClosed):
            await c.wait_for(lambda f: False, timeout=5)
        assert c.ws.close_code == 1009
        ok = await PageClient.connect(f"{hub.ws}/p/ws?roomName=big")
        await ok.stdin("cat", "unharmed\n")
        await ok.wait_output("cat", b"unharmed")
        await ok.close()


async def test_slow_consumer_is_closed_and_does_not_stall_the_room(tmp_path, in_process_hub):
    extra = """
[pages."/p".executors.flood]
type = "once"
command = ["sh", "-c", "yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 20000000; echo END"]
timeout = 60
"""
    async with in_process_hub(config(tmp_path, extra, queue=64)) as hub:
        reader = await PageClient.connect(f"{hub.ws}/p/ws?roomName=slow", max_size=None)
        # A tiny receive buffer and max_queue=1: the client soon stops reading from the socket.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", hub.port))
        stuck = await websockets.connect(
            f"{hub.ws}/p/ws?roomName=slow", sock=sock, max_queue=1, open_timeout=5
        )
        await reader.wait_type(None, "joined")
        await reader.send("flood")
        finished = asyncio.create_task(reader.wait_type("flood", "finished", timeout=60))
        room = hub.hub.face("pages").rooms["/p"].get("slow")
        # The stuck member overflows its queue and is being closed while the flood goes on.
        await eventually(lambda: any(m.closing for m in room.members), within=30)
        # Draining what it had buffered, the stuck client finds the close that says why.
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(stuck.recv(), 30)
        assert stuck.close_code == 4008
        assert "slow" in stuck.close_reason
        await finished
        assert reader.output("flood").rstrip().endswith(b"END")
        assert not reader.ws.close_code
        await eventually(lambda: hub.hub.connections.count == 1, within=30)
        await reader.close()
