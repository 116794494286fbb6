"""Every connection gets its share of the hub: a client flooding one room neither starves
another room nor gets more than ``server.limits.receive_rate`` handled (real hub processes)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pycrdt import create_update_message
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from documents.ycl import typed_updates
from hubtest import eventually, write_config
from pageclient import PageClient

FLOODER = Path(__file__).parent.parent / "yjs_flooder.py"

TERMINAL_AND_DOCUMENTS = """
[server]
ping_interval = {ping_interval}

[server.limits]
{limits}

[documents]
store = "memory"

[pages."/term"]
html = "page.html"

[pages."/term".executors.echo]
type = "always"
command = ["cat"]
"""


def config(tmp_path: Path, limits: str = "", ping_interval: float = 20.0) -> Path:
    text = TERMINAL_AND_DOCUMENTS.format(limits=limits, ping_interval=ping_interval)
    return write_config(tmp_path / "conf", text)


@contextlib.contextmanager
def flooder(url: str) -> Iterator[subprocess.Popen[str]]:
    """A document client flooding ``url`` from its own process, killed at the end."""
    proc = subprocess.Popen([sys.executable, str(FLOODER), url], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "flooding"
        yield proc
    finally:
        proc.kill()
        proc.wait()


async def updates_applied(base: str, room: str) -> int:
    """The document room's count of updates applied, from the hub's ``/api/rooms`` (0: no room)."""
    async with httpx.AsyncClient() as http:
        rooms = (await http.get(f"{base}/api/rooms")).json()
    return next((r["updates_applied"] for r in rooms if r.get("name") == room), 0)


async def echo_round_trips(client: PageClient, count: int, timeout: float) -> list[float]:
    """Seconds for each of ``count`` lines sent to ``cat`` to come back."""
    trips = []
    for i in range(count):
        line = f"probe-{i}-{time.monotonic()}\n"
        started = time.perf_counter()
        await client.stdin("echo", line)
        await client.wait_output("echo", line.encode(), timeout=timeout)
        trips.append(time.perf_counter() - started)
        await asyncio.sleep(0.01)
    return trips


async def test_a_flooding_document_client_does_not_starve_another_rooms_terminal(tmp_path, hub_process):
    hub = hub_process(config(tmp_path))  # default limits
    client = await PageClient.connect(f"{hub.ws}/term/ws?roomName=quiet-room", ping_interval=None)
    try:
        await client.wait_type(None, "joined")
        await echo_round_trips(client, 5, timeout=10)  # the program runs
        with flooder(f"{hub.ws}/yjs/flooded"):
            await asyncio.sleep(0.5)  # the flood is under way
            trips = sorted(await echo_round_trips(client, 50, timeout=5))
            applied = await updates_applied(hub.base, "flooded")
    finally:
        await client.close()
    assert applied > 100  # the flood did reach the hub
    # Before every connection got its share, one round trip took seconds (or never came back).
    assert trips[-2] < 0.5, f"round trips under flood (s): {trips[-5:]}"


async def test_a_client_over_the_receive_rate_is_read_no_faster(tmp_path, hub_process):
    limits = "receive_rate = 200\nreceive_burst = 100\nreceive_throttled_close = 0"
    hub = hub_process(config(tmp_path, limits))
    updates, _ = typed_updates(3000)
    async with connect(f"{hub.ws}/yjs/throttled", max_size=None) as ws:
        await ws.recv()  # the room is ready
        started = time.monotonic()
        for update in updates:
            await ws.send(create_update_message(update))
        await asyncio.sleep(2.0)
        elapsed = time.monotonic() - started
        count = await updates_applied(hub.base, "throttled")
        # The burst, then the rate (and a turn's worth of slack): the rest waits, unread.
        assert 200 <= count <= 100 + 200 * elapsed + 50, (count, elapsed)
        # Throttled, not dropped: everything arrives in the end, on the same connection.
        async def all_applied() -> bool:
            return await updates_applied(hub.base, "throttled") == len(updates)

        await eventually(all_applied, within=60, interval=0.2, what="every update to be applied")
        await ws.send(create_update_message(b"\x00\x00"))  # still open


@pytest.mark.parametrize("face", ["documents", "pages"])
async def test_a_client_held_back_too_long_is_closed_with_4029(tmp_path, hub_process, face):
    limits = "receive_rate = 50\nreceive_burst = 50\nreceive_throttled_close = 2.0"
    if face == "documents":
        # Pings every 0.5 s: the client's pongs wait behind its unread frames, which must not
        # count as a ping left unanswered (1011).
        hub = hub_process(config(tmp_path, limits, ping_interval=0.5))
        with flooder(f"{hub.ws}/yjs/flood") as proc:
            out, _ = proc.communicate(timeout=60)
        assert out.split()[:2] == ["closed", "4029"], out
        return
    hub = hub_process(config(tmp_path, limits))
    async with connect(f"{hub.ws}/term/ws?roomName=flood", max_size=None) as ws:
        sender = asyncio.create_task(flood_page_socket(ws))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 30)
        sender.cancel()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4029
    assert "rate" in closed.value.rcvd.reason


async def test_a_flooding_pages_client_does_not_starve_another_room(tmp_path, hub_process):
    hub = hub_process(config(tmp_path))  # default limits
    client = await PageClient.connect(f"{hub.ws}/term/ws?roomName=quiet-room", ping_interval=None)
    frame = '{"executor": "echo", "message": {"stdin": ""}}'  # handled, and answered by nothing
    async with connect(f"{hub.ws}/term/ws?roomName=flood", max_size=None, ping_interval=None) as ws:

        async def flood() -> None:
            with contextlib.suppress(ConnectionClosed):
                while True:
                    for _ in range(64):
                        await ws.send(frame)
                    await asyncio.sleep(0)  # a send that need not wait does not yield

        try:
            await client.wait_type(None, "joined")
            await echo_round_trips(client, 5, timeout=10)
            flooding = asyncio.create_task(flood())
            try:
                await asyncio.sleep(0.5)
                trips = sorted(await echo_round_trips(client, 50, timeout=5))
            finally:
                flooding.cancel()
        finally:
            await client.close()
    # Before, the flooder's frames were handled in one go per read: a round trip took
    # 0.25 s (median) to 0.7 s; now about a millisecond.
    assert trips[25] < 0.05 and trips[45] < 0.15, f"round trips under flood (s): {trips[20:]}"


ROOM_ONLY = "receive_rate = 0\nroom_receive_rate = {rate}\nroom_receive_burst = {burst}\n" \
    "receive_throttled_close = {close}"


async def test_the_members_of_a_flooding_room_together_are_read_no_faster_than_the_room_rate(
        tmp_path, hub_process):
    # No limit per connection: only the room's bucket holds the two flooders back.
    hub = hub_process(config(tmp_path, ROOM_ONLY.format(rate=300, burst=100, close=0)))
    client = await PageClient.connect(f"{hub.ws}/term/ws?roomName=quiet-room", ping_interval=None)
    try:
        await client.wait_type(None, "joined")
        await echo_round_trips(client, 5, timeout=10)
        with flooder(f"{hub.ws}/yjs/shared"), flooder(f"{hub.ws}/yjs/shared"):
            async def burst_spent() -> int:
                return await updates_applied(hub.base, "shared") >= 100

            await eventually(burst_spent, within=30, interval=0.05, what="the room's burst to be spent")
            before, started = await updates_applied(hub.base, "shared"), time.monotonic()
            trips = sorted(await echo_round_trips(client, 30, timeout=5))
            await asyncio.sleep(max(0.0, 2.0 - (time.monotonic() - started)))
            after, elapsed = await updates_applied(hub.base, "shared"), time.monotonic() - started
    finally:
        await client.close()
    # The room's rate (and a turn's worth of slack per member), not each member's flood.
    assert 0 < after - before <= 300 * elapsed + 50, (after - before, elapsed)
    assert trips[-2] < 0.5, f"round trips while the other room was throttled (s): {trips[-5:]}"


async def flood_page_room(url: str) -> tuple[int, str]:
    """Send frames to a page room's socket at ``url`` until the hub closes it: its code and reason."""
    async with connect(url, max_size=None, ping_interval=None) as ws:
        sender = asyncio.create_task(flood_page_socket(ws))
        try:
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), 30)
        finally:
            sender.cancel()
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


@pytest.mark.parametrize("face", ["documents", "pages"])
async def test_a_room_held_back_too_long_is_closed_with_4029_and_says_so(tmp_path, hub_process, face):
    limits = ROOM_ONLY.format(rate=50, burst=50, close=2.0)
    # Pings every 0.5 s: pongs waiting behind unread frames are no unanswered ping (1011).
    hub = hub_process(config(tmp_path, limits, ping_interval=0.5))
    if face == "documents":
        with flooder(f"{hub.ws}/yjs/flood") as first, flooder(f"{hub.ws}/yjs/flood") as second:
            outs = [proc.communicate(timeout=60)[0] for proc in (first, second)]
        closes = [tuple(out.strip().split(maxsplit=2)[1:]) for out in outs]
        assert all(out.startswith("closed") for out in outs), outs
    else:
        url = f"{hub.ws}/term/ws?roomName=flood"
        closes = [(str(code), reason) for code, reason in
                  await asyncio.gather(flood_page_room(url), flood_page_room(url))]
    assert closes == [("4029", "room receive rate limit exceeded")] * 2, closes


def unread_bytes(port: int) -> int:
    """Bytes the kernel holds received and not yet read on the hub's established TCP connections
    at ``port`` (``rx_queue`` of Linux's ``/proc/net/tcp``, IPv4 loopback)."""
    total = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        if local_port == port and fields[3] == "01":  # ESTABLISHED
            total += int(fields[4].split(":")[1], 16)
    return total


async def flood_page_socket(ws) -> None:
    """Send resize frames to a page room's socket as fast as it takes them, until it closes."""
    frame = '{"executor": "echo", "message": {"size": {"cols": 80, "rows": 24}}}'
    with contextlib.suppress(ConnectionClosed):
        while True:
            for _ in range(64):
                await ws.send(frame)
            await asyncio.sleep(0)  # let the reader take the hub's close frame


@pytest.mark.parametrize("face", ["documents", "pages"])
async def test_a_held_back_client_parks_little_in_the_hubs_kernel_buffers(tmp_path, hub_process, face):
    hub = hub_process(config(tmp_path, "receive_throttled_close = 0"))  # default rate and burst
    port = int(hub.base.rsplit(":", 1)[1])
    async with contextlib.AsyncExitStack() as stack:
        if face == "documents":
            stack.enter_context(flooder(f"{hub.ws}/yjs/flood"))
        else:
            ws = await stack.enter_async_context(connect(f"{hub.ws}/term/ws?roomName=flood", max_size=None))
            sender = asyncio.create_task(flood_page_socket(ws))
            stack.callback(sender.cancel)
        await asyncio.sleep(4.0)  # held back since the burst was spent
        # What the kernel took before the buffer was made small drains at the receive rate; on a
        # loaded machine that can take longer than the wait above.
        await eventually(lambda: unread_bytes(port) <= 128 * 1024, within=30, interval=0.1,
                         what="the bytes taken before the client was held back to be read")
        parked = []
        for _ in range(20):
            parked.append(unread_bytes(port))
            await asyncio.sleep(0.05)
    # Linux grows a fast sender's receive buffer to megabytes (net.ipv4.tcp_rmem): before, 2.3 MB
    # (documents) and 3.7 MB (pages) were parked; held back, the client gets a small buffer (twice
    # HELD_RECEIVE_BUFFER as Linux counts it, 32 KiB seen) and waits.
    assert max(parked) <= 128 * 1024, parked
