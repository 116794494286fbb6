"""Room leases and fencing tokens on a real Redis (the Lua scripts of roomhub.cluster.leases), and a
hub's Cluster losing a lease whose renewal is refused."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from hubtest import eventually
from roomhub.cluster import Cluster, Holder, Lease, LeaseTable
from roomhub.config import ClusterConfig, ConfigError, parse_config
from roomhub.core.relay import HeldRoom, HolderGone, RoomRelay
from services import running, start_redis


@pytest.fixture
async def client(redis_url):
    c = redis.Redis.from_url(redis_url)
    yield c
    await c.aclose()


async def test_one_holder_at_a_time_and_tokens_only_grow(client):
    table = LeaseTable(client, "t", lease_seconds=30)
    a = await table.acquire("yjs/notes", "hub-a")
    assert isinstance(a, Lease) and a.token > 0 and a.valid()
    taken = await table.acquire("yjs/notes", "hub-b")
    assert isinstance(taken, Holder) and (taken.room, taken.owner, taken.token) == ("yjs/notes", "hub-a", 0)
    assert 29 < taken.ttl <= 30  # refused: who holds it, and for how long yet (Redis's count)
    again = await table.acquire("yjs/notes", "hub-a")  # the holder asking again keeps its token
    assert isinstance(again, Lease) and again.token == a.token
    assert not await table.release(Lease("yjs/notes", "hub-b", a.token))  # not the holder
    assert not await table.release(Lease("yjs/notes", "hub-a", a.token + 7))  # not its token
    assert await table.release(a)
    b = await table.acquire("yjs/notes", "hub-b")
    assert isinstance(b, Lease) and b.token == a.token + 1
    assert await table.renew(a) is None  # the old holder's renewal is refused
    assert await table.renew(Lease("yjs/notes", "hub-b", a.token)) is None  # a stale token, right owner
    renewed = await table.renew(b)
    assert renewed is not None and renewed.token == b.token
    many = await table.renew_many([a, b, Lease("nowhere", "hub-b", b.token)])  # one round trip
    assert [m is not None for m in many] == [False, True, False]
    assert many[1] is not None and many[1].token == b.token and many[1].valid()
    other = await table.acquire("pages/r1", "hub-a")  # every room counts on its own
    assert isinstance(other, Lease) and other.token > 0
    held = {h.room: h for h in await table.holders()}
    assert set(held) == {"yjs/notes", "pages/r1"}
    assert held["yjs/notes"].owner == "hub-b" and held["yjs/notes"].token == b.token
    assert 0 < held["yjs/notes"].ttl <= 30


async def test_an_expired_lease_is_taken_with_a_larger_token(client):
    table = LeaseTable(client, "t", lease_seconds=0.3)
    a = await table.acquire("room", "hub-a")
    assert isinstance(a, Lease)
    assert isinstance(await table.acquire("room", "hub-b"), Holder)
    # Redis expires the lease: nobody renewed it
    b = await eventually(lambda: _lease_or_none(table.acquire("room", "hub-b")), within=10,
                         what="the lease to expire")
    assert b.token > a.token
    assert await table.renew(a) is None and not await table.release(a)


async def _lease_or_none(pending):
    result = await pending
    return result if isinstance(result, Lease) else None


async def test_prefixes_keep_clusters_apart(client):
    one, two = LeaseTable(client, "one", 30), LeaseTable(client, "two", 30)
    assert isinstance(await one.acquire("room", "a"), Lease)
    assert isinstance(await two.acquire("room", "b"), Lease)
    assert [h.owner for h in await one.holders()] == ["a"]


@contextlib.asynccontextmanager
async def joined(url: str, lease: float, heartbeat: float) -> AsyncIterator[tuple[Cluster, list[str]]]:
    """Hub "hub-a"'s side of cluster "c" on ``url``, started, and the rooms it reports lost."""
    config = ClusterConfig(redis=url, prefix="c", lease_seconds=lease, heartbeat_seconds=heartbeat)
    cluster = Cluster(config, "hub-a", advertise=lambda: "127.0.0.1:1", load=dict)
    lost: list[str] = []
    cluster.on_lost(lost.append)
    await cluster.start()
    try:
        yield cluster, lost
    finally:
        await cluster.stop()


async def test_a_hub_loses_a_lease_whose_renewal_is_refused(redis_url, client):
    async with joined(redis_url, lease=2, heartbeat=0.2) as (cluster, lost):
        lease = await cluster.acquire("yjs/notes")
        assert isinstance(lease, Lease) and lease.owner == cluster.run
        await cluster.beat()
        assert lost == [] and "yjs/notes" in cluster.held
        # Another hub took the room (the lease was lost while this hub was cut off, say)
        table = LeaseTable(client, "c", 2)
        await client.delete(table.lease_key("yjs/notes"))
        taken = await table.acquire("yjs/notes", "hub-b")
        assert isinstance(taken, Lease) and taken.token > lease.token
        await eventually(lambda: lost == ["yjs/notes"], within=10, what="the heartbeat to refuse")
        assert "yjs/notes" not in cluster.held
        assert not await cluster.release("yjs/notes")  # nothing to give back: hub-b keeps it
        assert [(h.owner, h.token) for h in await table.holders()] == [("hub-b", taken.token)]


async def test_leases_lapse_without_redis_and_tokens_grow_across_a_restart_that_lost_them(
    redis_server,
):
    """Cut from Redis (a Redis of its own, stopped here), a hub counts its leases lost once less
    than two heartbeats of them are left (its next check may come that late): it must stop
    serving a room before another hub may hold it, not earlier. Redis back, empty (no
    persistence): the hub is a member again, and a room's next token is still larger than the
    tokens given out before."""
    with running("roomhub-redis-cut-", start_redis) as own:
        async with joined(own.url, lease=1, heartbeat=0.1) as (cluster, lost):
            lease = await cluster.acquire("room")
            assert isinstance(lease, Lease)
            own.stop()
            await eventually(lambda: lost == ["room"], within=10, what="the lease to lapse")
            assert time.monotonic() >= lease.valid_until - 2 * 0.1  # not before its time
            again = start_redis(own.folder, port=own.port)
            try:
                member = await eventually(
                    lambda: _listed(cluster), within=10, what="the heartbeat to reach the new Redis"
                )
                assert member["run"] == cluster.run
                retaken = await cluster.acquire("room")
                assert isinstance(retaken, Lease) and retaken.token > lease.token
            finally:
                again.stop()


async def _listed(cluster: Cluster) -> dict | None:
    hubs = await cluster.membership.hubs()
    return hubs[0] if hubs else None


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({}, "cluster.redis"),
        ({"redis": "http://127.0.0.1"}, "cluster.redis"),
        ({"redis": "redis://h", "heartbeat_seconds": 2.5}, "cluster.heartbeat_seconds"),
        ({"redis": "redis://h", "lease_seconds": 0.1}, "cluster.lease_seconds"),
        ({"redis": "redis://h", "advertise": "no-port"}, "cluster.advertise"),
        ({"redis": "redis://h", "prefix": "a*b"}, "cluster.prefix"),
        ({"redis": "redis://h", "leases": 1}, "cluster.leases"),
    ],
)
def test_cluster_config_errors_name_the_key(section, key):
    with pytest.raises(ConfigError) as err:
        parse_config({"cluster": section})
    assert key in str(err.value)


async def test_a_hub_refused_a_room_looks_again_when_the_holder_s_lease_lapses(redis_url, client):
    """A room's holder left without releasing it (killed: it renews its lease no more). Another
    hub, refused, reads the lease's time left and looks again when it lapses, not a whole
    heartbeat later (looks a heartbeat apart, at 0.15, 1.05 and 1.95 s, would next come at
    2.85 s), and takes the room within a few milliseconds of the lapse at 2 s."""
    async with joined(redis_url, lease=2, heartbeat=0.9) as (cluster, _):
        relay = RoomRelay(cluster)
        dead = await LeaseTable(client, "c", 2).acquire("pages:/p:r", "hub-killed")
        assert isinstance(dead, Lease)
        started = time.monotonic()
        await asyncio.sleep(0.15)
        held = HeldRoom(alive=lambda: True, drop=lambda code, reason: asyncio.sleep(0))
        while True:
            try:
                assert await relay.locate("pages:/p:r", held) is None  # taken: held here now
                break
            except HolderGone:  # the killed hub is no member: its lease lapses in its time
                wait = relay.retry_after("pages:/p:r")
                assert 0.01 <= wait <= 0.9
                await asyncio.sleep(wait)
        elapsed = time.monotonic() - started
        assert 1.9 <= elapsed < 2.4, elapsed
        assert cluster.holds("pages:/p:r")
