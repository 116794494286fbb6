"""The callback WebSocket layer under `/yjs` (roomhub.transport.callback_websocket), through real sockets:
the door (token, origin), bad handshakes, fragmented messages, keepalive pings, slow consumers,
shutdown and what an endpoint's connection costs (no task while idle)."""

from __future__ import annotations

import asyncio
import base64
import gc
import os
import secrets
import socket

import pytest
from pycrdt import Doc, Text, create_sync_message
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.frames import Frame, Opcode

from hubtest import eventually
from roomhub.documents import protocol as p

from .test_endpoint import closed_with
from .ycl import typed_updates, y_client


def raw_handshake(port: int, path: str, rcvbuf: int | None = None, extra: str = "") -> socket.socket:
    """A plain TCP socket that completed a WebSocket handshake on ``path`` and reads nothing more
    (so it answers no ping): the client nobody wants."""
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                  f"{extra}\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def held_anywhere(needle: str) -> bool:
    """Whether an object the garbage collector tracks (a list, dict, instance...) refers to a
    ``str`` or ``bytes`` containing ``needle``."""
    gc.collect()
    raw = needle.encode()
    for obj in gc.get_objects():
        for ref in gc.get_referents(obj):
            if (isinstance(ref, str) and needle in ref) or (isinstance(ref, bytes) and raw in ref):
                return True
    return False


async def test_an_open_connection_keeps_nothing_of_its_request_head(docs_config, in_process_hub):
    """After the 101 the hub keeps no part of the upgrade request (the websockets library's
    handshake parser holds it, headers and all, for as long as it lives): an idle connection
    costs its framing state only. The connection still works afterwards."""
    token = secrets.token_hex(16)  # the header's value repeats it: the test holds no copy of that
    async with in_process_hub(docs_config()) as h:
        sock = await asyncio.to_thread(raw_handshake, h.port, "/yjs/lean",
                                       extra=f"X-Padding: {token * 64}\r\n")
        try:
            room = await eventually(lambda: h.hub.face("documents").get_room("lean"))
            await eventually(lambda: len(room.members) == 1)
            await eventually(lambda: not held_anywhere(token * 2), interval=0.2,
                             what="the request head released")
            updates, text = typed_updates(3)
            await asyncio.to_thread(sock.sendall, b"".join(
                Frame(Opcode.BINARY, p.sync_update(u)).serialize(mask=True, extensions=[]) for u in updates
            ))
            await eventually(lambda: room.to_json().get("text") == text)
        finally:
            sock.close()


async def test_token_and_origin_are_checked_at_the_handshake(docs_config, in_process_hub):
    config = docs_config(extra='[server.auth]\ntokens = ["sesame"]\n')
    async with in_process_hub(config) as h:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"{h.ws}/yjs/doc"):
                pass
        response = refused.value.response
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/json"
        assert b"missing token" in response.body
        with pytest.raises(InvalidStatus) as foreign:
            async with connect(f"{h.ws}/yjs/doc?token=sesame", origin="http://evil.example"):
                pass
        assert foreign.value.response.status_code == 403
        assert b"evil.example" in foreign.value.response.body
        async with connect(f"{h.ws}/yjs/doc?token=sesame", origin=f"http://127.0.0.1:{h.port}") as ws:
            assert (await ws.recv())[:2] == bytes([p.MSG_SYNC, 0])  # sync step 1


async def test_a_bad_handshake_gets_400_and_the_hub_goes_on(docs_config, in_process_hub):
    async with in_process_hub(docs_config()) as h:
        reader, writer = await asyncio.open_connection("127.0.0.1", h.port)
        writer.write(b"GET /yjs/doc HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")  # no Sec-WebSocket-Key
        status = await asyncio.wait_for(reader.readline(), 10)
        assert status.startswith(b"HTTP/1.1 400"), status
        writer.close()
        async with y_client(h.ws, "doc") as client:
            assert client.provider is not None


async def test_a_fragmented_message_is_one_message(docs_config, in_process_hub):
    async with in_process_hub(docs_config()) as h:
        async with y_client(h.ws, "frag") as writer:
            writer.doc.get("text", type=Text).insert(0, "in pieces")
            room = h.hub.face("documents").get_room("frag")
            await eventually(lambda: room.to_json().get("text") == "in pieces")
        async with connect(f"{h.ws}/yjs/frag") as ws:
            await ws.recv()  # sync step 1
            step1 = create_sync_message(Doc())  # our state vector: empty
            await ws.send([step1[:1], step1[1:2], step1[2:]])  # three frames, one message
            while (message := await asyncio.wait_for(ws.recv(), 10))[:2] != bytes([p.MSG_SYNC, 1]):
                pass
            doc = Doc()
            doc.apply_update(p.decode(message).update)
            assert str(doc.get("text", type=Text)) == "in pieces"


async def test_a_client_that_answers_no_ping_is_closed(docs_config, in_process_hub):
    config = docs_config(extra="[server]\nping_interval = 0.2\n")
    async with in_process_hub(config) as h:
        async with y_client(h.ws, "pings") as alive:
            mute = await asyncio.to_thread(raw_handshake, h.port, "/yjs/pings")
            try:
                room = h.hub.face("documents").get_room("pings")
                await eventually(lambda: len(room.members) == 2, what="the mute client joined")
                await eventually(lambda: len(room.members) == 1, what="the mute client closed")
                data = await asyncio.to_thread(mute.recv, 1 << 20)
                # what it was sent ends with a close frame 1011 "keepalive ping timeout"
                assert b"keepalive ping timeout" in data or data == b""
            finally:
                mute.close()
            await asyncio.sleep(0.6)  # three ping rounds: the client that answers stays
            assert len(room.members) == 1
            alive.doc.get("text", type=Text).insert(0, "still here")
            await eventually(lambda: room.to_json().get("text") == "still here")


async def test_a_client_that_does_not_read_is_closed_4008_and_the_room_goes_on(docs_config, in_process_hub,
                                                                                caplog):
    config = docs_config(extra="[server.limits]\nsend_buffer_bytes = 65536\n")
    async with in_process_hub(config) as h:
        async with y_client(h.ws, "slow") as writer, y_client(h.ws, "slow") as reader:
            stuck = await asyncio.to_thread(raw_handshake, h.port, "/yjs/slow", 4096)
            try:
                # sync step 1, so that the hub sends it every update from now on
                step1 = create_sync_message(Doc())
                stuck.sendall(Frame(Opcode.BINARY, step1).serialize(mask=True, extensions=[]))
                room = h.hub.face("documents").get_room("slow")
                await eventually(lambda: len(room.members) == 3)
                text = writer.doc.get("text", type=Text)
                for i in range(200):  # up to 20 MB, far more than the socket buffers hold
                    text.insert(len(text), str(i % 10) * 100_000)
                    await asyncio.sleep(0.005)
                    if len(room.members) == 2:
                        break
                await eventually(lambda: len(room.members) == 2, what="the stuck client closed")
                assert "closing as slow consumer" in caplog.text
                await eventually(lambda: len(reader.doc.get("text", type=Text)) == len(text), within=30)
            finally:
                stuck.close()


async def test_shutdown_closes_document_clients_with_1001(docs_config, in_process_hub):
    async with in_process_hub(docs_config()) as h:
        ws = await connect(f"{h.ws}/yjs/bye")
        await ws.recv()
        stop = asyncio.ensure_future(h.hub.stop())
        code, reason = await closed_with(ws)
        await stop
        assert code == 1001 and reason


async def test_sigterm_closes_document_clients_with_1001_and_exits_0(docs_config, hub_process):
    hub = hub_process(docs_config())
    async with connect(f"{hub.ws}/yjs/term") as ws:
        await ws.recv()  # sync step 1: joined
        stopping = asyncio.get_running_loop().run_in_executor(None, hub.stop)
        code, reason = await closed_with(ws)
        assert code == 1001 and reason == "hub shutting down"
        assert await stopping == 0
    assert "shutdown complete" in hub.log()


async def test_frames_sent_before_a_half_close_are_all_handled(docs_config, in_process_hub):
    """Thousands of frames then EOF in one go: they are handled over several turns of the loop
    (a fair share at a time), and the EOF, read once they are, drops none of them."""
    updates, text = typed_updates(2000)
    frames = b"".join(
        Frame(Opcode.BINARY, p.sync_update(u)).serialize(mask=True, extensions=[]) for u in updates
    )
    async with in_process_hub(docs_config(grace_period=30)) as h:
        sock = await asyncio.to_thread(raw_handshake, h.port, "/yjs/half-closed")
        try:
            await asyncio.sleep(0.2)  # the room is ready (frames sent before it are capped)
            await asyncio.to_thread(sock.sendall, frames)
            sock.shutdown(socket.SHUT_WR)
            room = await eventually(lambda: h.hub.face("documents").get_room("half-closed"))
            await eventually(lambda: room.to_json().get("text") == text, within=30,
                             what="every update sent before the EOF")
        finally:
            sock.close()
