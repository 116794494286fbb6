"""The callback-driven client WebSocket (a hub's connection to another hub) against a server
nobody here wrote: the ``websockets`` library's asyncio server, on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest
import websockets
from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.http11 import Response
from websockets.server import ServerProtocol

from roomhub.transport.client_websocket import ClientWebSocket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_messages_both_ways_in_order_fragmented_ones_whole_and_the_close_passed_on():
    seen: list[str | bytes] = []
    headers_seen: dict[str, str] = {}

    async def handler(ws):
        headers_seen.update(ws.request.headers)
        async for message in ws:
            seen.append(message)
            if message == "fragments":
                await ws.send(["frag", "ment", "ed"])  # one message in three frames
                await ws.send([b"\x00", b"\x01\x02"])
            elif message == "bye":
                await ws.close(4001, "done here")
            else:
                await ws.send(message)

    received: list[str | bytes] = []
    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        client = await ClientWebSocket.connect(f"ws://127.0.0.1:{port}/path?q=1", received.append,
                                               headers=[("x-custom", "yes")])
        for n in range(200):  # one turn: one write
            assert client.send(f"text-{n}")
        assert client.send(b"\xff\x00binary")
        client.send("fragments")
        while len(received) < 203:
            await asyncio.sleep(0.01)
        client.send("bye")
        await asyncio.wait_for(client.closed, 5)
    assert headers_seen["x-custom"] == "yes"
    assert seen[:201] == [f"text-{n}" for n in range(200)] + [b"\xff\x00binary"]
    assert received == [*seen[:201], "fragmented", b"\x00\x01\x02"]
    assert client.close_rcvd is not None and client.close_rcvd.code == 4001
    assert client.close_rcvd.reason == "done here"
    assert not client.send("late")  # closed: nothing is sent


async def test_a_close_from_the_client_reaches_the_server_with_its_code():
    codes: list[int | None] = []

    async def handler(ws):
        with contextlib.suppress(websockets.ConnectionClosed):
            async for _ in ws:
                pass
        codes.append(ws.close_code)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        client = await ClientWebSocket.connect(f"ws://127.0.0.1:{port}/", lambda m: None)
        client.close(4005, "leaving")
        await asyncio.wait_for(client.closed, 5)
        for _ in range(100):
            if codes:
                break
            await asyncio.sleep(0.01)
    assert codes == [4005]


async def test_a_refusal_is_invalid_status_with_the_server_s_status_and_body():
    def refuse(connection, request):
        return connection.respond(409, "not the holder\n")

    async with serve(lambda ws: None, "127.0.0.1", 0, process_request=refuse) as server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(websockets.InvalidStatus) as caught:
            await ClientWebSocket.connect(f"ws://127.0.0.1:{port}/", lambda m: None)
    assert caught.value.response.status_code == 409
    assert caught.value.response.body == b"not the holder\n"


async def test_refused_and_silent_servers_raise_in_time():
    with pytest.raises(OSError):
        await ClientWebSocket.connect(f"ws://127.0.0.1:{free_port()}/", lambda m: None)
    # a server that accepts the TCP connection and never answers the upgrade
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await ClientWebSocket.connect(f"ws://127.0.0.1:{port}/", lambda m: None, open_timeout=0.3)
    assert loop.time() - started < 2
    silent.close()


class _Deaf(asyncio.Protocol):
    """Answers the upgrade (websockets' sans-I/O server), then reads nothing more: no pong."""

    def connection_made(self, transport):
        self.transport = transport
        self.ws = ServerProtocol()
        self.open = False

    def data_received(self, data):
        if self.open:
            return
        self.ws.receive_data(data)
        for request in self.ws.events_received():
            self.ws.send_response(self.ws.accept(request))
            self.open = True
        self.transport.write(b"".join(self.ws.data_to_send()))


async def test_a_server_that_stops_answering_pings_is_let_go_within_two_intervals():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Deaf, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = await ClientWebSocket.connect(f"ws://127.0.0.1:{port}/", lambda m: None, ping_interval=0.2)
    opened = loop.time()
    await asyncio.wait_for(client.closed, 3)
    assert 0.3 < loop.time() - opened < 1.5
    assert client.close_rcvd is None  # no close frame: the holder vanished
    server.close()


async def test_a_message_over_max_size_closes_with_1009():
    async def handler(ws):
        await ws.send(b"x" * 2000)
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        received: list[str | bytes] = []
        client = await ClientWebSocket.connect(f"ws://127.0.0.1:{port}/", received.append, max_size=1000)
        await asyncio.wait_for(client.closed, 5)
    assert received == []
    assert client.protocol.close_sent is not None and client.protocol.close_sent.code == 1009


def test_the_library_s_sans_io_names_this_module_uses_are_there():
    # public names of websockets' sans-I/O layer (a changed release fails here, loudly)
    assert Response and Headers and ServerProtocol
    from websockets.client import ClientProtocol
    from websockets.uri import parse_uri

    protocol = ClientProtocol(parse_uri("ws://127.0.0.1:1/x"))
    request = protocol.connect()
    assert request.path == "/x" and "Sec-WebSocket-Key" in request.headers
