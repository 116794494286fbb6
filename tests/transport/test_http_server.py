"""The hub's uvicorn HTTP protocol: writes of one event-loop step leave together, bytes unchanged."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
import websockets

from hubtest import free_port, serve_uvicorn
from roomhub.transport.http_server import FLUSH_BYTES, PROTOCOL, CoalescingTransport

pytestmark = pytest.mark.skipif(PROTOCOL is None, reason="uvicorn without its httptools protocol")


@contextlib.asynccontextmanager
async def socket_pair() -> AsyncIterator[tuple[CoalescingTransport, socket.socket]]:
    """A real stream transport (wrapped) on one end of a socket pair; the other end, non-blocking."""
    loop = asyncio.get_running_loop()
    ours, peer = socket.socketpair()
    peer.setblocking(False)
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
    try:
        yield CoalescingTransport(transport, loop), peer  # type: ignore[arg-type]
    finally:
        transport.close()
        peer.close()


def received(peer: socket.socket) -> bytes:
    try:
        return peer.recv(1 << 20)
    except BlockingIOError:
        return b""


async def test_writes_of_one_step_leave_together_at_its_end() -> None:
    async with socket_pair() as (transport, peer):
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        transport.writelines([b"o", b"k"])
        assert transport.get_write_buffer_size() == 40
        time.sleep(0.05)  # without yielding to the loop: nothing leaves before the step ends
        assert received(peer) == b""
        await asyncio.sleep(0)  # the step ends: one write
        time.sleep(0.05)
        assert received(peer) == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


async def test_a_large_write_and_a_close_do_not_wait() -> None:
    async with socket_pair() as (transport, peer):
        transport.write(b"head")
        transport.write(b"x" * FLUSH_BYTES)  # past the limit: out at once, in order
        transport.write(b"tail")
        transport.close()  # writes "tail" first
        got = b""
        for _ in range(200):
            await asyncio.sleep(0.01)
            got += received(peer)
            if len(got) >= FLUSH_BYTES + 8:
                break
        assert got == b"head" + b"x" * FLUSH_BYTES + b"tail"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/small``: a JSON answer; ``/stream``: chunked, 3 parts; ``/echo``: the body back;
    a WebSocket: echo."""
    if scope["type"] == "lifespan":
        return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] != "websocket.disconnect":
            await send({"type": "websocket.send", "text": message["text"]})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one ", b"two ", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})
        return
    data = body if scope["path"] == "/echo" else b'{"ok": true}'
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[int]:
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=PROTOCOL, ws="websockets-sansio",
                            log_level="warning", lifespan="off")
    async with serve_uvicorn(config, stop_timeout=10):
        yield port


async def test_responses_and_websockets_through_the_protocol() -> None:
    big = bytes(range(256)) * 8192  # 2 MiB
    async with serving() as port, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        for _ in range(3):  # one keep-alive connection, several responses
            r = await http.get("/small")
            assert r.status_code == 200 and r.json() == {"ok": True}
        r = await http.get("/stream")
        assert r.headers["transfer-encoding"] == "chunked" and r.content == b"one two three"
        r = await http.post("/echo", content=big)
        assert r.content == big
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.send("hello")
            assert await asyncio.wait_for(ws.recv(), 5) == "hello"
