"""`/yjs/<room>` and `/api/documents` through real sockets: bad input, access, REST, races."""

from __future__ import annotations

import asyncio
import socket
import struct

import httpx
import pytest
from pycrdt import Doc, Text, create_sync_message, create_update_message
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from hubtest import eventually
from roomhub.documents import protocol as p

from .ycl import y_client


async def closed_with(ws, within: float = 10.0) -> tuple[int | None, str]:
    """Read until the server closes; return its close code and reason."""
    async with asyncio.timeout(within):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as exc:
            return (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, "")


@pytest.mark.parametrize(
    "frame, code",
    [
        (b"\x00\x02\x05ab", 1007),  # truncated byte string
        (b"\x09", 1007),  # unknown message type
        (create_update_message(b"\x01\x02\x03"), 1007),  # an update that does not decode
        ("hello", 1003),  # a text frame
        (p.encode_awareness([(5, 1, "[" * 1000 + "]" * 1000)]), 1007),  # a state nested too deep
    ],
)
async def test_bad_frames_close_only_their_connection(docs_config, in_process_hub, frame, code, caplog):
    async with in_process_hub(docs_config()) as h:
        async with y_client(h.ws, "doc") as good:
            good.doc.get("text", type=Text).insert(0, "intact")
            room = h.hub.face("documents").get_room("doc")
            await eventually(lambda: room.to_json().get("text") == "intact")
            async with connect(f"{h.ws}/yjs/doc") as bad:
                await bad.recv()  # sync step 1 from the hub
                await bad.send(frame)
                got, reason = await closed_with(bad)
                assert got == code and reason
            # the document and the other client are untouched and still live
            good.doc.get("text", type=Text).insert(6, "!")
            async with y_client(h.ws, "doc") as other:
                await eventually(lambda: str(other.doc.get("text", type=Text)) == "intact!")
    assert "Traceback" not in caplog.text


async def test_oversize_frame_is_closed_with_1009(docs_config, in_process_hub):
    config = docs_config(extra="[server.limits]\nmax_frame_bytes = 65536\n")
    async with in_process_hub(config) as h:
        async with y_client(h.ws, "big") as good, connect(f"{h.ws}/yjs/big", max_size=None) as bad:
            await bad.recv()
            doc = Doc()
            doc.get("text", type=Text).insert(0, "x" * 100_000)
            await bad.send(create_update_message(doc.get_update()))
            assert (await closed_with(bad))[0] == 1009
            good.doc.get("text", type=Text).insert(0, "small")
            room = h.hub.face("documents").get_room("big")
            await eventually(lambda: room.to_json().get("text") == "small")


async def test_access_hook_read_only_and_deny(docs_config, in_process_hub, monkeypatch):
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).parent))
    config = docs_config(extra='access = "access_hook:decide"\n')
    async with in_process_hub(config) as h:
        async with y_client(h.ws, "doc") as writer:
            writer.doc.get("text", type=Text).insert(0, "from writer")
            face = h.hub.face("documents")
            await eventually(lambda: face.get_room("doc").to_json().get("text") == "from writer")
            # a read-only client syncs, but its updates are dropped and it is told so
            async with connect(f"{h.ws}/yjs/doc?role=reader") as reader:
                doc = Doc()
                await reader.send(create_sync_message(doc))
                frames = [await reader.recv(), await reader.recv()]
                step2 = next(f for f in frames if f[:2] == b"\x00\x01")
                doc.apply_update(p.decode(step2).update)
                assert str(doc.get("text", type=Text)) == "from writer"
                doc.get("text", type=Text).insert(0, "reader was here ")
                await reader.send(create_update_message(doc.get_update()))
                async with asyncio.timeout(5):
                    while (frame := await reader.recv())[0] != p.MSG_AUTH:
                        pass
                assert p.decode(frame) == p.Auth(0, "read-only access to document 'doc'")
                # the reader still receives the writer's changes
                writer.doc.get("text", type=Text).insert(0, ">")
                async with asyncio.timeout(5):
                    while (frame := await reader.recv())[:2] != b"\x00\x02":
                        pass
            assert face.get_room("doc").to_json()["text"] == ">from writer"
            async with connect(f"{h.ws}/yjs/secret") as denied:
                assert p.decode(await denied.recv()) == p.Auth(
                    0, "access to document 'secret' denied"
                )
                assert (await closed_with(denied))[0] == 4003
            async with connect(f"{h.ws}/yjs/broken") as failing:  # a failing hook denies
                assert (await closed_with(failing))[0] == 4003


async def test_rest_views_python_api_and_eviction(docs_config, in_process_hub):
    async with in_process_hub(docs_config(grace_period=0.3)) as h:
        face = h.hub.face("documents")
        http = httpx.AsyncClient(base_url=h.base)
        async with y_client(h.ws, "rest") as c:
            with c.doc.transaction():
                c.doc.get("text", type=Text).insert(0, "abc")
            # the client's edit has reached the hub before Python writes after it
            await eventually(lambda: face.get_room("rest").to_json().get("text") == "abc")
            # Python writes into the shared document: the client gets it like any update
            async with face.document("rest") as room:
                room.doc.get("text", type=Text).insert(3, "def")
            await eventually(lambda: str(c.doc.get("text", type=Text)) == "abcdef")
            listing = (await http.get("/api/documents")).json()
            assert (
                listing[0]["name"] == "rest" and listing[0]["live"] and listing[0]["clients"] == 1
            )
            view = (await http.get("/api/documents/rest")).json()
            assert view["content"] == {"text": "abcdef"}
        # after the grace period the room is flushed and evicted; the store still has it
        await eventually(lambda: face.get_room("rest") is None, what="eviction")
        view = (await http.get("/api/documents/rest")).json()
        assert view == {"name": "rest", "live": False, "content": {"text": "abcdef"}}
        # the Python API loads an evicted document from the store
        async with face.document("rest") as room:
            assert str(room.doc.get("text", type=Text)) == "abcdef"
        assert (await http.delete("/api/documents/rest")).status_code == 200
        assert (await http.get("/api/documents/rest")).status_code == 404
        assert (await http.delete("/api/documents/rest")).status_code == 404
        assert (await http.get("/api/documents")).json() == []
        bad = await http.get(
            "/yjs/bad%20name",
            headers={
                "connection": "upgrade",
                "upgrade": "websocket",
                "sec-websocket-version": "13",
                "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
        )
        assert bad.status_code == 400
        await http.aclose()


async def test_ten_clients_joining_a_fresh_room_at_once_all_sync(docs_config, in_process_hub):
    async with in_process_hub(docs_config()) as h:
        async with y_client(h.ws, "seed") as seed:
            seed.doc.get("text", type=Text).insert(0, "seeded")
        async with asyncio.TaskGroup() as tg:
            clients = [tg.create_task(_join_and_edit(h.ws, "race", i)) for i in range(10)]
        texts = {t.result() for t in clients}
        assert len(texts) == 1, texts
        (text,) = texts
        assert sorted(text.split(";")[:-1]) == sorted(f"c{i}" for i in range(10))


async def _join_and_edit(ws: str, room: str, i: int) -> str:
    async with y_client(ws, room) as c:
        text = c.doc.get("text", type=Text)
        text.insert(0, f"c{i};")
        await eventually(lambda: text.to_py().count(";") == 10, what=f"client {i} to see all edits")
        await asyncio.sleep(0.2)  # let the others see everything too before leaving
        return str(text)


async def test_many_rooms_stay_apart(docs_config, in_process_hub):
    async with in_process_hub(docs_config()) as h:

        async def one(i: int) -> None:
            async with y_client(h.ws, f"room-{i}") as a, y_client(h.ws, f"room-{i}") as b:
                a.doc.get("text", type=Text).insert(0, f"only {i}")
                await eventually(lambda: str(b.doc.get("text", type=Text)) == f"only {i}")

        async with asyncio.TaskGroup() as tg:
            for i in range(40):
                tg.create_task(one(i))
        face = h.hub.face("documents")
        views = [await face.read_json(f"room-{i}") for i in range(40)]
        assert views == [{"text": f"only {i}"} for i in range(40)]


def _raw_handshake(port: int, path: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += s.recv(4096)
    assert b" 101 " in response.split(b"\r\n")[0]
    return s


def _masked_frame(opcode: int, payload: bytes) -> bytes:
    mask = b"\x01\x02\x03\x04"
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body


@pytest.mark.parametrize("how", ["status-0", "no-status", "tcp-reset"])
async def test_odd_closes_harm_nothing(docs_config, in_process_hub, how):
    async with in_process_hub(docs_config()) as h:
        async with y_client(h.ws, "odd") as good:

            def odd_peer() -> None:
                s = _raw_handshake(h.port, "/yjs/odd")
                s.sendall(_masked_frame(0x2, create_sync_message(Doc())))
                if how == "tcp-reset":
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    s.sendall(_masked_frame(0x8, b"\x00\x00" if how == "status-0" else b""))
                s.close()

            for _ in range(3):
                await asyncio.to_thread(odd_peer)
            room = h.hub.face("documents").get_room("odd")
            await eventually(lambda: len(room.members) == 1, what="odd peers to be gone")
            good.doc.get("text", type=Text).insert(0, "still fine")
            async with y_client(h.ws, "odd") as other:
                await eventually(lambda: str(other.doc.get("text", type=Text)) == "still fine")
        assert (await httpx.AsyncClient().get(f"{h.base}/api/health")).status_code == 200


async def test_keepalive_and_query_awareness(docs_config, in_process_hub):
    async with in_process_hub(docs_config(extra="keepalive_interval = 0.1\n")) as h:
        async with connect(f"{h.ws}/yjs/ka") as ws:
            await ws.recv()  # sync step 1
            async with asyncio.timeout(5):
                while await ws.recv() != p.KEEPALIVE:
                    pass
            await ws.send(p.encode_awareness([(42, 1, '{"user":"q"}')]))
            await ws.send(bytes([p.MSG_QUERY_AWARENESS]))
            async with asyncio.timeout(5):
                while True:
                    message = p.decode(await ws.recv())
                    if isinstance(message, p.AwarenessUpdate) and message.entries:
                        assert message.entries[0].state == '{"user":"q"}'
                        break
