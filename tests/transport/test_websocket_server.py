"""The hub's uvicorn WebSocket protocol: frames marked "more" are held and leave with the next write;
the synchronous write writes a lone frame at once and refuses once a close was sent."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
import websockets

from hubtest import free_port, serve_uvicorn
from roomhub.transport.connections import AsgiSocket, Connection
from roomhub.transport.websocket_server import BATCH_EXTENSION, MORE_KEY, PROTOCOL, SEND_NOW_KEY

pytestmark = pytest.mark.skipif(PROTOCOL is None, reason="uvicorn without the sans-I/O protocol")


after_close: list[bool] = []


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Sends "a" held, then on "go" sends "b" (which writes both); on "close" holds "c" and closes;
    on "now" mixes synchronous writes and a held frame; on "close-now" closes, then tries a
    synchronous write (its result goes to ``after_close``). Path ``/conn`` runs a Connection."""
    assert scope["type"] == "websocket"
    if scope["path"] == "/conn":
        await connection_app(scope, receive, send)
        return
    await receive()
    await send({"type": "websocket.accept"})
    batching = BATCH_EXTENSION in scope["extensions"]
    send_now = scope["extensions"][BATCH_EXTENSION][SEND_NOW_KEY] if batching else None
    await send({"type": "websocket.send", "text": f"batching={batching}"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message["text"] == "go":
            await send({"type": "websocket.send", "text": "a", MORE_KEY: True})
            await send({"type": "websocket.send", "bytes": b"a2", MORE_KEY: True})
            await asyncio.sleep(0.3)  # the client must not see "a" yet
            await send({"type": "websocket.send", "text": "b"})
        elif message["text"] == "close":
            await send({"type": "websocket.send", "text": "c", MORE_KEY: True})
            await send({"type": "websocket.close", "code": 4321, "reason": "bye"})
            return
        elif message["text"] == "now":
            first = send_now("n1")
            await send({"type": "websocket.send", "text": "h", MORE_KEY: True})
            second = send_now(b"n2")  # writes the held "h" first
            await send({"type": "websocket.send", "text": f"{first},{second}"})
        elif message["text"] == "close-now":
            await send({"type": "websocket.close", "code": 1000})
            after_close.append(send_now("late"))
            return


async def connection_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """On "burst": frames sent alone, in a burst, and by a callback that runs in the next
    event-loop turn before the writer task; all must arrive in the order they were sent."""
    websocket = AsgiSocket(scope, receive, send)
    assert await websocket.accept()
    conn = Connection(websocket)
    loop = asyncio.get_running_loop()
    async for frame in conn.receive():
        if frame == "burst":
            conn.send("0", urgent=True)  # written at once
            loop.call_soon(lambda: conn.send("2", urgent=True))  # before the writer sends "1"
            conn.send("1")
            await asyncio.sleep(0)
            for i in range(3, 301):
                conn.send(str(i), urgent=i % 7 == 0)
            await asyncio.sleep(0)
            conn.send("301", urgent=True)
    await conn.aclose()


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[int]:
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, ws=PROTOCOL, log_level="warning", lifespan="off"
    )
    async with serve_uvicorn(config, stop_timeout=10):
        yield port


async def test_held_frames_leave_with_the_next_send_in_order() -> None:
    async with serving() as port, websockets.connect(f"ws://127.0.0.1:{port}/") as ws:
        assert await ws.recv() == "batching=True"
        await ws.send("go")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.15)  # "a" is held while the app sleeps
        assert await asyncio.wait_for(ws.recv(), 5) == "a"
        assert await asyncio.wait_for(ws.recv(), 5) == b"a2"
        assert await asyncio.wait_for(ws.recv(), 5) == "b"


async def test_a_close_writes_the_held_frames_first() -> None:
    async with serving() as port, websockets.connect(f"ws://127.0.0.1:{port}/") as ws:
        await ws.recv()
        await ws.send("close")
        assert await asyncio.wait_for(ws.recv(), 5) == "c"
        with pytest.raises(websockets.ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 4321


async def test_synchronous_writes_keep_the_order_with_held_frames() -> None:
    async with serving() as port, websockets.connect(f"ws://127.0.0.1:{port}/") as ws:
        await ws.recv()
        await ws.send("now")
        got = [await asyncio.wait_for(ws.recv(), 5) for _ in range(4)]
        assert got == ["n1", "h", b"n2", "True,True"]


async def test_no_synchronous_write_after_a_close() -> None:
    after_close.clear()
    async with serving() as port, websockets.connect(f"ws://127.0.0.1:{port}/") as ws:
        await ws.recv()
        await ws.send("close-now")
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
    assert after_close == [False]


async def test_connection_frames_keep_their_order_across_direct_and_queued_sends() -> None:
    async with serving() as port, websockets.connect(f"ws://127.0.0.1:{port}/conn") as ws:
        await ws.send("burst")
        got = [await asyncio.wait_for(ws.recv(), 5) for _ in range(302)]
        assert got == [str(i) for i in range(302)]
