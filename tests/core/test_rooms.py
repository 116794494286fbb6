"""Rooms (roomhub.core.rooms) and the room socket loop (roomhub.core.face.serve_room_socket)
through real WebSocket clients against a real hub on loopback, in a page's rooms: broadcast
without echo, creation and teardown, grace period, limits, oversize frames, slow consumers."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
import websockets

from hubtest import eventually
from pageclient import PageClient
from pageclient import room_events as events
from pageclient import rooms_config as config


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
    async with in_process_hub(config(tmp_path, extra, send_buffer=1024 * 1024)) as hub:
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
        # Well within the keepalive interval (20 s): a program's output left paused by a window
        # nothing drains would only go on when the next ping is written.
        finished = asyncio.create_task(reader.wait_type("flood", "finished", timeout=15))
        room = hub.hub.face("pages").rooms["/p"].get("slow")
        # The stuck member overflows its queue and is being closed while the flood goes on.
        await eventually(lambda: any(m.closing for m in room.members), within=30)
        # Draining what it had buffered, the stuck client finds the close that says why.
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(stuck.recv(), 30)
        assert stuck.close_code == 4008
        assert "slow" in stuck.close_reason
        async with httpx.AsyncClient(base_url=hub.base) as http:  # and Prometheus counts it
            metrics = (await http.get("/metrics")).text
        assert 'roomhub_connection_closes_total{code="4008",face="pages"} 1.0' in metrics
        await finished
        assert reader.output("flood").rstrip().endswith(b"END")
        assert not reader.ws.close_code
        await eventually(lambda: hub.hub.connections.count == 1, within=30)
        await reader.close()
