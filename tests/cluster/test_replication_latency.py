"""A room opened on a hub that has other documents open gets the other hubs' updates at once: they
are pushed on the document's channel, whatever else the hub waits for (a blocking read of every
open document's stream, as before, met a new room's first updates only once it timed out)."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time

from pycrdt import Array
from websockets.asyncio.client import connect

from documents.ycl import y_client
from hubtest import eventually

from .test_documents_cluster import config, items


async def test_a_room_opened_on_a_busy_hub_gets_remote_updates_at_once(
    tmp_path, redis_url, postgres_dsn, hub_process
):
    conf = config(tmp_path / "conf", redis_url, postgres_dsn)
    a_hub, b_hub = (hub_process(conf, "--data-dir", str(tmp_path / n)) for n in ("a", "b"))
    delays = []
    # hub b keeps a document open: it listens for that one's messages already
    async with y_client(b_hub.ws, "kept-open"):
        for i in range(9):
            room = f"late-{i}"
            async with y_client(a_hub.ws, room) as a, y_client(b_hub.ws, room) as b:
                sent = time.perf_counter()
                a.doc.get("arr", type=Array).append("x")
                await eventually(lambda b=b: items(b.doc) == ["x"], interval=0.001,
                                 what="the update on hub b")
                delays.append(time.perf_counter() - sent)
    # a delay of a read's timeout (0 to 250 ms) would show in the median
    assert statistics.median(delays) < 0.06, delays


async def test_rooms_opened_at_once_on_a_fresh_hub_all_get_remote_updates(
    tmp_path, redis_url, postgres_dsn, hub_process
):
    """Hub b's first rooms open together: their subscriptions share one connection (one
    opened for each would leave all but one unread), and every room hears hub a."""
    conf = config(tmp_path / "conf", redis_url, postgres_dsn)
    a_hub, b_hub = (hub_process(conf, "--data-dir", str(tmp_path / n)) for n in ("a", "b"))
    rooms = [f"together-{i}" for i in range(12)]
    async with contextlib.AsyncExitStack() as stack:
        # bare sockets first, all at once: hub b opens the rooms together
        await asyncio.gather(*(stack.enter_async_context(connect(f"{b_hub.ws}/yjs/{r}")) for r in rooms))
        readers = [await stack.enter_async_context(y_client(b_hub.ws, r)) for r in rooms]
        writers = [await stack.enter_async_context(y_client(a_hub.ws, r)) for r in rooms]
        for writer in writers:
            writer.doc.get("arr", type=Array).append("x")
        for room, reader in zip(rooms, readers, strict=True):
            await eventually(lambda reader=reader: items(reader.doc) == ["x"], within=2,
                             what=f"hub a's update in {room} on hub b")
