"""One backpressure rule for every WebSocket (roomhub.transport.send_window): bytes buffered for
a client against a low and high water mark and a hard bound (``server.limits.send_*_bytes``).
Through real sockets, on both kinds of connection the hub serves: a page room's socket (a task
per connection) and a document room's socket (callbacks): a client that reads nothing is closed
with 4008 and a reason once past the bound, and the others in its room keep receiving."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from pycrdt import Doc, Text, create_sync_message
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from documents.test_callback_socket import raw_handshake
from documents.ycl import y_client
from hubtest import eventually, write_config
from pageclient import PageClient
from roomhub.config import ConfigError, parse_config
from roomhub.transport.send_window import SendWindow

BOUND = 256 * 1024

HUB = f"""
[server.limits]
send_buffer_bytes = {BOUND}

[documents]
store = "memory"

[pages."/p"]
html = "page.html"

[pages."/p".executors.flood]
type = "once"
command = ["sh", "-c", "yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 20000000; echo END"]
timeout = 60
"""


def limits_error(**limits: object) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config({"server": {"limits": limits}})
    return str(caught.value)


def test_send_queue_frames_is_refused_with_what_replaced_it():
    message = limits_error(send_queue_frames=1024)
    assert "server.limits" in message
    assert "send_queue_frames" in message and "send_buffer_bytes" in message
    assert "send_high_water_bytes" in message and "send_low_water_bytes" in message


def test_water_marks_must_be_ordered_and_the_error_names_the_key():
    message = limits_error(send_buffer_bytes=1024 * 1024, send_high_water_bytes=2 * 1024 * 1024)
    assert "server.limits.send_high_water_bytes" in message and "send_buffer_bytes" in message
    message = limits_error(send_high_water_bytes=64 * 1024, send_low_water_bytes=64 * 1024)
    assert "server.limits.send_low_water_bytes" in message and "below" in message


def test_water_marks_default_below_the_bound():
    limits = parse_config({"server": {"limits": {"send_buffer_bytes": 128 * 1024}}}).server.limits
    assert limits.send_low_water_bytes < limits.send_high_water_bytes <= limits.send_buffer_bytes
    limits = parse_config({}).server.limits
    assert (limits.send_buffer_bytes, limits.send_high_water_bytes, limits.send_low_water_bytes) == (
        16 * 1024 * 1024, 1024 * 1024, 256 * 1024)


async def test_the_window_pauses_at_the_high_mark_resumes_at_the_low_one_and_bounds():
    window = SendWindow(bound=1000, high=600, low=200)
    drained = window.drained
    assert window.add(500) and window.is_drained and drained.is_set()
    assert window.add(100) and not window.is_drained and not drained.is_set()
    window.remove(300)  # 300: between the marks, still paused
    assert not window.is_drained
    window.remove(100)
    assert window.is_drained and drained.is_set()
    assert window.add(800)
    assert not window.add(1)  # 1001 bytes: past the bound
    window.release()
    assert window.buffered == 0 and window.is_drained
    assert SendWindow(bound=1000, high=600, low=200).add(5000)  # owed nothing: any one message
    with pytest.raises(ValueError):
        SendWindow(bound=1000, high=600, low=600)


async def test_a_window_paused_within_a_turn_drains_once_written_if_the_transport_is_not_paused():
    window = SendWindow(bound=1000, high=600, low=200)
    assert window.add(700) and not window.is_drained  # a turn's messages, not written yet
    # Written, the kernel took all but 300 bytes: the transport holds no more than its high mark,
    # so it is not paused and will never call resume_writing. The window must not wait for it.
    assert window.written(300)
    assert window.is_drained and window.drained.is_set()
    window.pause_transport()  # more than the high mark held: the transport says when it drains
    assert window.add(500) and window.written(700) and not window.is_drained
    window.resume_transport(150)
    assert window.is_drained and window.drained.is_set()
    assert not window.written(1001)  # past the bound


async def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the hub sent ``sock`` (read only now) until it closed the connection."""
    def read() -> bytes:
        sock.settimeout(30)
        chunks = []
        try:
            while chunk := sock.recv(1 << 20):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
        return b"".join(chunks)
    return await asyncio.to_thread(read)


def close_frame(data: bytes) -> tuple[int, str]:
    """The code and reason of the close frame ``data`` (a server's unmasked frames) ends with."""
    at = data.rfind(b"\x88")
    while at >= 0:
        length = data[at + 1]
        if length >= 2 and at + 2 + length == len(data):
            code = struct.unpack("!H", data[at + 2:at + 4])[0]
            return code, data[at + 4:at + 2 + length].decode()
        at = data.rfind(b"\x88", 0, at)
    raise AssertionError("no close frame at the end of what was received")


async def test_a_page_client_that_reads_nothing_is_closed_4008_and_its_room_keeps_receiving(
        tmp_path, in_process_hub):
    async with in_process_hub(write_config(tmp_path / "cfg", HUB)) as hub:
        reader = await PageClient.connect(f"{hub.ws}/p/ws?roomName=slow", max_size=None)
        # A tiny receive buffer and a queue of one message: the client soon stops reading.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", hub.port))
        stuck = await connect(f"{hub.ws}/p/ws?roomName=slow", sock=sock, max_queue=1, max_size=None)
        try:
            room = hub.hub.face("pages").rooms["/p"].get("slow")
            await eventually(lambda: len(room.members) == 2)
            await reader.wait_type(None, "joined")
            await reader.send("flood")
            # Being closed; it reads again within the seconds the hub gives a close to go through.
            await eventually(lambda: any(m.closing for m in room.members), within=60,
                             what="the stuck client closing")
            with pytest.raises(ConnectionClosed):  # what it had buffered, then the close
                while True:
                    await asyncio.wait_for(stuck.recv(), 30)
            assert stuck.close_code == 4008 and "too slow" in stuck.close_reason
            await eventually(lambda: len(room.members) == 1)
            # Well within the keepalive interval (20 s): a program's output left paused by a
            # window nothing drains would only go on when the next ping is written.
            await reader.wait_type("flood", "finished", timeout=15)
            assert reader.output("flood").rstrip().endswith(b"END")
            assert not reader.ws.close_code
        finally:
            await stuck.close()
            await reader.close()


async def test_a_document_client_that_reads_nothing_is_closed_4008_and_its_room_keeps_receiving(
        tmp_path, in_process_hub):
    async with in_process_hub(write_config(tmp_path / "cfg", HUB)) as hub:
        async with y_client(hub.ws, "slow") as writer, y_client(hub.ws, "slow") as reader:
            stuck = await asyncio.to_thread(raw_handshake, hub.port, "/yjs/slow", 4096)
            try:
                step1 = create_sync_message(Doc())  # so that the hub sends it every update
                stuck.sendall(Frame(Opcode.BINARY, step1).serialize(mask=True, extensions=[]))
                room = hub.hub.face("documents").get_room("slow")
                await eventually(lambda: len(room.members) == 3)
                text = writer.doc.get("text", type=Text)

                def stuck_closing() -> bool:
                    return any(s.closing for s in hub.hub.sockets.open)

                for i in range(200):  # up to 20 MB, far more than the socket buffers hold
                    text.insert(len(text), str(i % 10) * 100_000)
                    await asyncio.sleep(0.005)
                    if stuck_closing():
                        break
                # Being closed; it reads again within the seconds the hub gives a close to go through.
                await eventually(stuck_closing, what="the stuck client closing")
                stuck.shutdown(socket.SHUT_WR)  # the hub then writes what it holds and closes
                code, reason = close_frame(await read_until_closed(stuck))
                assert code == 4008 and "too slow" in reason
                await eventually(lambda: len(room.members) == 2)
                await eventually(lambda: len(reader.doc.get("text", type=Text)) == len(text), within=30)
            finally:
                stuck.close()
