"""Several hubs, one set of rooms: a hub's part in a cluster kept in Redis.

What exists: membership (:mod:`.membership`, a heartbeat key per hub) and
room leases with fencing tokens (:mod:`.leases`). :class:`Cluster` is one
hub's side: it beats every ``heartbeat_seconds``, renews the leases it holds
in the same turn, and reports a lease it lost (refused renewal, or none
that succeeded until only two heartbeats of it were left: Redis unreachable) to the
callbacks registered with :meth:`Cluster.on_lost`, so that the hub stops
serving a room before another hub may hold it. It also gives what relaying a
client to a room's holder needs: the holder's address (:meth:`Cluster.address_of`)
and the secret every hub of the cluster shares (:attr:`Cluster.relay_secret`),
with which hubs authenticate the connections they relay to each other (the
core's :mod:`roomhub.core.relay` does the relaying).

The package imports no face and not the hub; it needs the ``cluster`` extra
(redis-py). Redis's server-side clock decides expiries; a hub's own timing
only errs on the safe side (a lease counts from before the request that took
it was sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import Callable
from typing import Any

from .config import ClusterConfig
from .leases import Holder, Lease, LeaseTable
from .membership import Membership

log = logging.getLogger("roomhub.cluster")

MAX_PUBLISHED_ROOMS = 2000
"""Rooms a heartbeat publishes at most (the record's ``rooms`` still counts them all): it is
written every ``heartbeat_seconds``, so its size is bounded."""
LOSS_MARGIN_HEARTBEATS = 2
"""Heartbeats of a lease left when, not renewed, it counts as lost here: time to stop its room
(programs, processes, members) before Redis lets another hub take it."""

__all__ = ["Cluster", "ClusterUnavailable", "Holder", "Lease", "LeaseTable", "Membership", "advertised"]


class ClusterUnavailable(ConnectionError):
    """Redis cannot be reached at start; the message names the URL (without its password)."""


def advertised(host: str, port: int) -> str:
    """The default ``cluster.advertise`` of a hub bound to ``host:port``: the bound address, with
    a wildcard bind (``0.0.0.0``, ``::``, ``""``) replaced by loopback (hubs on one machine)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _public(url: str) -> str:
    """``url`` without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    credentials, at, address = rest.rpartition("@")
    if not at:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user + '@' if user else ''}{address}"


class Cluster:
    """One hub's membership and leases in the cluster ``config`` describes.

    ``hub_id`` names the hub (stable across its restarts); ``advertise()`` gives its address
    (asked at :meth:`start`, when the port is known); ``load()`` gives the figures its heartbeat
    publishes (a JSON object: rooms, connections). Leases are owned by :attr:`run`, the hub id
    with a suffix new at every start, so that a restarted hub's fencing token is a new one.

    ``rooms()``, if given, lists the hub's live rooms (JSON objects: namespace, name, clients...):
    each heartbeat publishes the first :data:`MAX_PUBLISHED_ROOMS` of them, so that every hub can
    list every hub's rooms (:meth:`other_rooms`).
    """

    def __init__(self, config: ClusterConfig, hub_id: str, advertise: Callable[[], str],
                 load: Callable[[], dict[str, Any]],
                 rooms: Callable[[], list[dict[str, Any]]] | None = None) -> None:
        import redis.asyncio as redis

        self.config = config
        self.hub_id = hub_id
        self.run = f"{hub_id}.{secrets.token_hex(3)}"
        self._advertise = advertise
        self._load = load
        self._rooms = rooms
        self._hub_ids: set[str] | None = None  # the live hubs at the last heartbeat (None: none yet)
        self.advertise = ""
        self.started = time.time()
        # No request may outlast a heartbeat: a hanging Redis must not hold back lease expiry checks.
        self.client = redis.Redis.from_url(
            config.redis, socket_timeout=config.heartbeat_seconds,
            socket_connect_timeout=config.heartbeat_seconds,
        )
        self.membership = Membership(self.client, config.prefix, config.lease_seconds)
        self.leases = LeaseTable(self.client, config.prefix, config.lease_seconds)
        self.held: dict[str, Lease] = {}
        self._deadlines: dict[str, asyncio.TimerHandle] = {}  # room -> when its lease counts as lost
        self._lost_callbacks: list[Callable[[str], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._leaving = asyncio.Event()
        self._joined = False
        self._reachable = True
        self._known_hubs: list[str] = []
        self.relay_secret = ""  # read (or made) at start: see _shared_secret

    # -- life -------------------------------------------------------------------
    async def check(self) -> None:
        """Raise :class:`ClusterUnavailable` unless Redis answers a PING (closes nothing)."""
        import redis

        try:
            await self.client.ping()
        except redis.RedisError as exc:
            where = _public(self.config.redis)
            raise ClusterUnavailable(f"cluster.redis {where} not reachable: {exc}") from None

    async def close(self) -> None:
        """Close the Redis connections (after :meth:`check` alone; :meth:`stop` does it too)."""
        await self.client.aclose()

    async def start(self) -> None:
        """Join: the first heartbeat, then one every ``heartbeat_seconds``. Raises
        :class:`ClusterUnavailable` when Redis does not answer."""
        self.advertise = self.config.advertise or self._advertise()
        try:
            await self.check()
            self.relay_secret = await self._shared_secret()
            await self.membership.beat(self.record(), self.published_rooms())
        except BaseException:
            await self.client.aclose()
            raise
        self._joined = True
        log.info("cluster %s: hub %s joined as %s (lease %.1f s, heartbeat %.1f s)", self.config.prefix,
                 self.hub_id, self.advertise, self.config.lease_seconds, self.config.heartbeat_seconds)
        self._task = asyncio.create_task(self._beat_loop(), name="cluster-heartbeat")

    async def stop(self) -> None:
        """Leave: release every lease held and remove the heartbeat (best effort: Redis may be gone).
        Does nothing if the hub never joined."""
        if not self._joined:
            return
        self._joined = False
        if self._task is not None:
            # The loop ends after its current heartbeat, whose every request is bounded by the
            # socket timeout; no cancellation that a client library might absorb mid-request.
            self._leaving.set()
            await asyncio.wait({self._task}, timeout=self.config.heartbeat_seconds * 8)
            if not self._task.done():
                self._task.cancel()
            self._task = None
        with contextlib.suppress(Exception):
            for lease in list(self.held.values()):
                await self.leases.release(lease)
            await self.membership.leave(self.hub_id)
        for room in list(self._deadlines):
            self._forget_deadline(room)
        self.held.clear()
        await self.client.aclose()
        log.info("cluster %s: hub %s left", self.config.prefix, self.hub_id)

    async def _shared_secret(self) -> str:
        """The secret the hubs of this cluster share: the first hub to start makes it (SET NX),
        every other reads it. Kept in Redis without expiry; whoever can read Redis is trusted
        already (it decides who holds every room)."""
        key = f"{self.config.prefix}:relay-secret"
        await self.client.set(key, secrets.token_urlsafe(32), nx=True)
        secret = await self.client.get(key)
        return secret.decode() if isinstance(secret, bytes) else str(secret)

    def record(self) -> dict[str, Any]:
        """This hub's heartbeat record."""
        return {
            "id": self.hub_id, "run": self.run, "advertise": self.advertise, "pid": os.getpid(),
            "started": self.started, "leases": len(self.held), **self._load(),
        }

    # -- leases -------------------------------------------------------------------
    def on_lost(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(room)`` when a lease this hub held is lost (taken, expired)."""
        self._lost_callbacks.append(callback)

    async def acquire(self, room: str) -> Lease | Holder:
        """Take ``room``'s lease (kept and renewed until :meth:`release`); the :class:`Holder` if
        another hub has it. Raises ``redis.RedisError`` when Redis is unreachable."""
        result = await self.leases.acquire(room, self.run)
        if isinstance(result, Lease):
            self._hold(result)
        return result

    def holds(self, room: str) -> bool:
        """Whether this hub holds ``room``'s lease now (by its own conservative clock)."""
        lease = self.held.get(room)
        return lease is not None and lease.valid()

    async def address_of(self, owner: str) -> str | None:
        """The advertised ``host:port`` of the hub whose run is ``owner`` (a lease's owner), None
        when that run is not alive any more (its heartbeat expired, or the hub restarted as a
        new run). Raises ``redis.RedisError``."""
        record = await self.membership.record(owner.rsplit(".", 1)[0])
        if record is None or record.get("run") != owner:
            return None
        return record.get("advertise") or None

    async def release(self, room: str) -> bool:
        """Give ``room``'s lease back; False if this hub did not hold it (any more)."""
        lease = self.held.pop(room, None)
        self._forget_deadline(room)
        return lease is not None and await self.leases.release(lease)

    def _hold(self, lease: Lease) -> None:
        """Keep ``lease`` (taken or renewed) and count it lost when too little of it is left for
        a renewal to come: at the clock, not at the next heartbeat's failure, which comes late
        on a busy machine (each heartbeat's wait and request timeout drift)."""
        self.held[lease.room] = lease
        self._forget_deadline(lease.room)
        # The room must be stopped here before Redis lets another hub take it: with
        # LOSS_MARGIN_HEARTBEATS heartbeats left, a renewal has already failed to come.
        left = lease.valid_until - time.monotonic()
        margin = LOSS_MARGIN_HEARTBEATS * self.config.heartbeat_seconds
        self._deadlines[lease.room] = asyncio.get_running_loop().call_later(
            max(0.0, left - margin), self._deadline_passed, lease)

    def _deadline_passed(self, lease: Lease) -> None:
        self._deadlines.pop(lease.room, None)
        if self.held.get(lease.room) is lease:
            self._lose(lease.room, "not renewed: Redis unreachable for nearly the lease time")

    def _forget_deadline(self, room: str) -> None:
        deadline = self._deadlines.pop(room, None)
        if deadline is not None:
            deadline.cancel()

    def _lose(self, room: str, why: str) -> None:
        self._forget_deadline(room)
        if self.held.pop(room, None) is None:
            return
        log.warning("cluster: lease of room %s lost (%s): no longer served here", room, why)
        for callback in self._lost_callbacks:
            try:
                callback(room)
            except Exception:
                log.exception("cluster: lost-lease callback failed for %s", room)

    # -- the heartbeat -------------------------------------------------------------
    async def _beat_loop(self) -> None:
        while not self._leaving.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._leaving.wait(), self.config.heartbeat_seconds)
                return
            try:
                await self.beat()
            except Exception:  # a bug must not stop the heartbeat: the leases would lapse
                log.exception("cluster: heartbeat failed")

    async def beat(self) -> None:
        """One heartbeat: the record, every held lease renewed, the hubs listed (changes logged)."""
        import redis

        try:
            await self.membership.beat(self.record(), self.published_rooms())
            leases = list(self.held.values())
            for lease, renewed in zip(leases, await self.leases.renew_many(leases), strict=True):
                if self.held.get(lease.room) is not lease:
                    continue  # released (or taken again) meanwhile
                if renewed is None:
                    self._lose(lease.room, "its renewal was refused: another hub holds it or it expired")
                else:
                    self._hold(renewed)
            hubs = await self.membership.hubs()
        except redis.RedisError as exc:
            if self._reachable:
                log.warning("cluster: Redis %s unreachable (%s); leases lapse after %.1f s without it",
                            _public(self.config.redis), exc, self.config.lease_seconds)
            self._reachable = False  # each lease is lost at its deadline unless renewed (_hold)
            return
        if not self._reachable:
            log.info("cluster: Redis reachable again")
            self._reachable = True
        names = [f"{h['id']} ({h.get('advertise')})" for h in hubs]
        if names != self._known_hubs:
            log.info("cluster %s: %d hub(s): %s", self.config.prefix, len(names), ", ".join(names))
            self._known_hubs = names
        self._log_arrivals(hubs)

    def _log_arrivals(self, hubs: list[dict[str, Any]]) -> None:
        """Log each hub that joined or left since the last heartbeat (none at the first)."""
        ids = {h["id"]: h for h in hubs}
        if self._hub_ids is not None:
            for hub_id in sorted(ids.keys() - self._hub_ids):
                log.info("cluster %s: hub %s joined (%s, pid %s)", self.config.prefix, hub_id,
                         ids[hub_id].get("advertise"), ids[hub_id].get("pid"))
            for hub_id in sorted(self._hub_ids - ids.keys()):
                log.info("cluster %s: hub %s left (stopped, or its heartbeat expired)",
                         self.config.prefix, hub_id)
        self._hub_ids = set(ids)

    def published_rooms(self) -> list[dict[str, Any]] | None:
        """What the heartbeat publishes of this hub's rooms (at most :data:`MAX_PUBLISHED_ROOMS`),
        None without a ``rooms`` callable."""
        if self._rooms is None:
            return None
        return self._rooms()[:MAX_PUBLISHED_ROOMS]

    async def other_rooms(self) -> list[dict[str, Any]]:
        """The other live hubs' rooms as their last heartbeats published them (at most
        ``heartbeat_seconds`` old), each with a ``hub`` key naming its hub. Raises
        ``redis.RedisError`` when Redis does not answer."""
        published = await self.membership.rooms()
        return [
            {**room, "hub": hub_id}
            for hub_id, rooms in published.items() if hub_id != self.hub_id
            for room in rooms
        ]

    async def describe(self) -> dict[str, Any]:
        """The cluster as ``GET /api/cluster`` shows it: this hub, every live hub (its record: address,
        pid, load; ``room_list``: its rooms' namespace, name and clients, another hub's as its last
        heartbeat published them), every lease."""
        hubs = await self.membership.hubs()
        rooms = await self.membership.rooms()
        own = self.published_rooms()
        if own is not None:  # this hub's own fresh, not as its last heartbeat had them
            rooms[self.hub_id] = own
        now = time.time()
        return {
            "hub": self.hub_id,
            "run": self.run,
            "prefix": self.config.prefix,
            "lease_seconds": self.config.lease_seconds,
            "heartbeat_seconds": self.config.heartbeat_seconds,
            "hubs": [
                {**h, "uptime": now - h.get("started", now),
                 "room_list": [{"namespace": r.get("namespace"), "name": r.get("name"),
                                "clients": r.get("clients")} for r in rooms.get(h["id"], [])]}
                for h in hubs
            ],
            "leases": [
                {"room": h.room, "owner": h.owner, "hub": h.owner.rsplit(".", 1)[0], "token": h.token,
                 "ttl": h.ttl}
                for h in await self.leases.holders()
            ],
        }
