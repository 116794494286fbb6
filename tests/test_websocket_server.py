"""The hub's uvicorn WebSocket protocol: frames marked "more" are held and leave with the next write."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
import websockets

from hubtest import free_port
from roomhub.websocket_server import BATCH_EXTENSION, MORE_KEY, PROTOCOL

pytestmark = pytest.mark.skipif(PROTOCOL is None, reason="uvicorn without the sans-I/O protocol")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Sends "a" held, then on "go" sends "b" (which writes both); on "close" holds "c" and closes."""
    assert scope["type"] == "websocket"
    await receive()
    await send({"type": "websocket.accept"})
    batching = BATCH_EXTENSION in scope["extensions"]
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


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[int]:
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, ws=PROTOCOL, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "server stopped during start-up"
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


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
