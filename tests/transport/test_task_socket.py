"""A face's socket served by a task per connection (roomhub.core.face.FaceSocketEndpoint on
roomhub.transport.callback_websocket), through a real hub on loopback and real WebSocket clients:
the inbox holds at most a few messages while the task does not read (reading pauses, nothing is
lost, order is kept), messages sent before a close still reach the task, and the connection limit
refuses the handshake with HTTP 503."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from hubtest import InProcessHub, eventually, free_port, serve_uvicorn, write_config
from roomhub.core.context import FaceContext
from roomhub.core.face import Face, FaceSocketEndpoint
from roomhub.transport.callback_websocket import INBOX_MESSAGES, CallbackWebSocket, SocketEndpoint


class GatedEcho(FaceSocketEndpoint):
    """Echoes every message, but only once ``gate`` is set; keeps the connections it served."""

    def __init__(self, context: FaceContext) -> None:
        super().__init__(context, "/echo", exact=True)
        self.gate = asyncio.Event()
        self.served: list[CallbackWebSocket] = []
        self.read: list[str | bytes] = []
        self.ended = asyncio.Event()

    async def serve(self, sock: CallbackWebSocket, scope: dict[str, Any]) -> None:
        self.served.append(sock)
        await self.gate.wait()
        while (frame := await sock.next_frame()) is not None:
            self.read.append(frame)
            sock.send(frame)
        self.ended.set()


class EchoFace(Face):
    name = "echo"

    def __init__(self, context: FaceContext) -> None:
        super().__init__(context)
        self.socket = GatedEcho(context)

    def socket_endpoints(self) -> list[SocketEndpoint]:
        return [self.socket]


@contextlib.asynccontextmanager
async def echo_hub(tmp_path: Path, limits: str = "") -> AsyncIterator[tuple[InProcessHub, GatedEcho]]:
    from roomhub.app import server_config
    from roomhub.config import load_config
    from roomhub.hub import Hub

    config = load_config(write_config(tmp_path / "cfg", f"[server.limits]\n{limits}\n"))
    config.server.data_dir = tmp_path / "data"
    hub = Hub(config, faces=[EchoFace])
    port = free_port()
    async with serve_uvicorn(server_config(hub, host="127.0.0.1", port=port, loop="asyncio")):
        face = hub.faces[0]
        assert isinstance(face, EchoFace)
        yield InProcessHub(hub, port), face.socket


async def test_a_task_that_does_not_read_holds_the_client_back_and_loses_nothing(tmp_path: Path) -> None:
    async with echo_hub(tmp_path, "receive_rate = 0") as (h, endpoint):
        async with connect(f"{h.ws}/echo") as ws:
            sent = [f"m{i}" for i in range(5000)]

            async def flood() -> None:
                for message in sent:
                    await ws.send(message)

            flooding = asyncio.create_task(flood())
            await eventually(lambda: endpoint.served, what="the task started")
            sock = endpoint.served[0]
            # Without a reader, the connection stops at a full inbox and reads no further.
            await eventually(lambda: sock._messages is not None and len(sock._messages) >= INBOX_MESSAGES,
                             what="a full inbox")
            await asyncio.sleep(0.3)
            assert sock._messages is not None and len(sock._messages) == INBOX_MESSAGES
            assert sock._reading_paused
            endpoint.gate.set()
            got = [await asyncio.wait_for(ws.recv(), 30) for _ in sent]
            await flooding
            assert got == sent and endpoint.read == sent


async def test_messages_sent_before_a_close_reach_the_task(tmp_path: Path) -> None:
    async with echo_hub(tmp_path) as (h, endpoint):
        async with connect(f"{h.ws}/echo") as ws:
            for i in range(3):
                await ws.send(f"last words {i}")
            await eventually(lambda: endpoint.served, what="the task started")
            sock = endpoint.served[0]
        assert ws.close_code == 1000
        endpoint.gate.set()
        await asyncio.wait_for(endpoint.ended.wait(), 10)
        # The task read all three before next_frame said the connection had ended (their echoes
        # found it closing: send returns False).
        assert endpoint.read == [f"last words {i}" for i in range(3)]
        assert await sock.next_frame() is None


async def test_the_connection_limit_refuses_the_handshake_with_503(tmp_path: Path) -> None:
    async with echo_hub(tmp_path, "max_connections = 1") as (h, endpoint):
        endpoint.gate.set()
        async with connect(f"{h.ws}/echo") as first:
            with pytest.raises(InvalidStatus) as refused:
                async with connect(f"{h.ws}/echo"):
                    pass
            response = refused.value.response
            assert response.status_code == 503
            assert b"connection limit reached" in response.body
            await first.send("still served")
            assert await first.recv() == "still served"
        # The slot is given back when the connection ends.
        await eventually(lambda: h.hub.connections.count == 0, what="the slot released")
        async with connect(f"{h.ws}/echo") as again:
            await again.send("x")
            assert await again.recv() == "x"


async def test_a_message_sent_to_many_connections_reaches_each_whole_and_in_order(tmp_path: Path) -> None:
    """A broadcast hands each connection the same object and is framed once (PreparedMessage):
    every client still gets every message whole, at each of the frame header's length
    boundaries (RFC 6455 section 5.2: 7-bit, 16-bit and 64-bit lengths), text (non-ASCII) and
    binary, explicitly prepared or not, and interleaved with messages sent to one client only."""
    from roomhub.transport.callback_websocket import PreparedMessage

    async with echo_hub(tmp_path) as (h, endpoint):
        clients = [await connect(f"{h.ws}/echo", max_size=None) for _ in range(3)]
        try:
            await eventually(lambda: len(endpoint.served) == 3, what="three connections served")
            socks = endpoint.served
            messages: list[str | bytes] = []
            for size in (0, 125, 126, 65535, 65536, 70000):
                messages.append(bytes(i % 251 for i in range(size)))
                messages.append(("é" * size)[: max(0, size // 2)])
            expected: list[list[str | bytes]] = [[], [], []]
            for index, message in enumerate(messages):
                for n, sock in enumerate(socks):
                    assert sock.send(message)
                    expected[n].append(message)
                    if n == 0:  # a message for one client between two members' copies
                        own = f"only-{index}"
                        assert sock.send(own)
                        expected[0].append(own)
            prepared = PreparedMessage("prepared ✓")
            for n, sock in enumerate(socks):
                assert sock.send(prepared)
                expected[n].append("prepared ✓")
            for n, ws in enumerate(clients):
                received = [await asyncio.wait_for(ws.recv(), 10) for _ in expected[n]]
                assert received == expected[n]
        finally:
            for ws in clients:
                await ws.close()
