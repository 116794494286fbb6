"""A room opened on a hub that already reads other documents' streams gets the other hubs' updates at
once: opening it wakes the hub's blocking XREAD (its wake stream), which would otherwise read the
new room's stream only once it timed out (up to ``BLOCK_SECONDS``, 250 ms)."""

from __future__ import annotations

import statistics
import time

import redis.asyncio as redis
from pycrdt import Array

from documents.ycl import y_client
from hubtest import eventually
from roomhub.documents.replication import BLOCK_SECONDS, WAKE_TTL_MS

from .test_documents_cluster import PREFIX, config, items, run_of


async def test_a_room_opened_on_a_reading_hub_gets_remote_updates_without_waiting_for_the_read(
    tmp_path, redis_url, postgres_dsn, hub_process
):
    conf = config(tmp_path / "conf", redis_url, postgres_dsn)
    a_hub, b_hub = (hub_process(conf, "--data-dir", str(tmp_path / n)) for n in ("a", "b"))
    delays = []
    # hub b keeps a document open: from then on its read loop blocks in an XREAD of that stream
    async with y_client(b_hub.ws, "kept-open"):
        for i in range(9):
            room = f"late-{i}"
            async with y_client(a_hub.ws, room) as a, y_client(b_hub.ws, room) as b:
                sent = time.perf_counter()
                a.doc.get("arr", type=Array).append("x")
                await eventually(lambda b=b: items(b.doc) == ["x"], interval=0.001,
                                 what="the update on hub b")
                delays.append(time.perf_counter() - sent)
    # without the wake-up each delay is what remained of the XREAD in flight: 0 to 250 ms
    assert statistics.median(delays) < BLOCK_SECONDS / 4, delays
    async with redis.Redis.from_url(redis_url) as client:
        wake = f"{PREFIX}:wake:{await run_of(b_hub)}"
        assert await client.xlen(wake) == 1  # one entry kept, not one per room opened
        assert 0 < await client.pttl(wake) <= WAKE_TTL_MS  # gone a while after its hub
