"""Partitions are rooms: who holds a partition, which instances it has, and when they stop.

A browser tab opens the partition socket ``/api/backends/ws?partition=P&owner=T``
(``T``: the tab's id, kept in ``sessionStorage`` so that a reload keeps it;
its default partition id is derived from it the same way). Rules:

- the partition's room lives while sockets are open; its members receive
  every progress event, log line and status change of the partition;
- an instance installed with an owner is stopped when that owner has had no
  socket open on the partition for ``grace_period`` seconds (a reload
  reconnects well within it, so the backends survive reloads); the room's
  own teardown (same grace) stops every owned instance left;
- an instance with no owner (installed through the REST API without one, or
  started on demand by the proxy) lives until its partition has had no
  socket and no proxied request for ``idle_timeout`` seconds, or until an
  explicit ``DELETE``; so a named partition outlives the tab for the
  backends the tab did not install.

The monitor room (namespace ``backends-monitor``) receives the events of
every partition, for the dashboard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from ..core.bus import Bus
from ..core.relay import HeldRoom
from ..core.rooms import Room, RoomRegistry
from ..transport.callback_websocket import CallbackWebSocket
from . import protocol as p
from .instances import Instance, Launcher

log = logging.getLogger("roomhub.backends.partition")

NAMESPACE = "backends"
MONITOR_NAMESPACE = "backends-monitor"


def owner_of(conn: CallbackWebSocket) -> str | None:
    """The ``owner`` query parameter of the connection's handshake (the tab's id), which the
    partition socket keeps as the connection's ``state``."""
    owner = conn.state
    return owner if isinstance(owner, str) and owner else None


class PartitionRoom(Room[CallbackWebSocket]):
    """The room of one partition; ``owners`` maps an owner id to its open connections."""

    def __init__(self, name: str, partitions: Partitions, bus: Bus) -> None:
        super().__init__(NAMESPACE, name, bus)
        self.partitions = partitions
        self.owners: dict[str, set[CallbackWebSocket]] = {}

    async def on_join(self, connection: CallbackWebSocket) -> None:
        owner = owner_of(connection)
        if owner:
            self.owners.setdefault(owner, set()).add(connection)
            self.partitions.owner_back(self.name, owner)
        self.partitions.touch(self.name)
        connection.send(p.encode(p.event(
            "Partition", partitionId=self.name, owner=owner,
            instances=[i.describe() for i in self.partitions.of(self.name)],
        )))

    async def forget(self, connection: CallbackWebSocket) -> None:
        """The ``left`` hook: start the owner's grace period when its last socket closed."""
        owner = owner_of(connection)
        if not owner:
            return
        conns = self.owners.get(owner, set())
        conns.discard(connection)
        if not conns:
            self.owners.pop(owner, None)
            self.partitions.owner_gone(self.name, owner)

    async def on_teardown(self) -> None:
        self.partitions.touch(self.name)
        owned = [i for i in self.partitions.of(self.name) if i.owner is not None]
        if owned:
            await self.partitions.stop(owned, "the owning tab closed")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "owners": sorted(self.owners)}


class Partitions:
    """The instances of every partition, the partition rooms and the owner/idle timers."""

    def __init__(self, launcher: Launcher, bus: Bus, grace_period: float, idle_timeout: float,
                 max_rooms: int, max_clients: int) -> None:
        self.launcher = launcher
        self.bus = bus
        self.grace_period = grace_period
        self.idle_timeout = idle_timeout
        self.instances: dict[str, Instance] = {}
        self.registry: RoomRegistry[PartitionRoom] = RoomRegistry(
            NAMESPACE, lambda name: PartitionRoom(name, self, bus), grace_period=grace_period,
            max_rooms=max_rooms, max_clients=max_clients, bus=bus,
        )
        self.monitor: RoomRegistry[Room] = RoomRegistry(
            MONITOR_NAMESPACE, lambda name: Room(MONITOR_NAMESPACE, name, bus), max_rooms=1,
            max_clients=max_clients, bus=bus,
        )
        self._owner_timers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._activity: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()

    # -- queries --------------------------------------------------------------------------

    def of(self, partition: str) -> list[Instance]:
        """The live (starting or listening) instances of ``partition``."""
        return [i for i in self.instances.values() if i.partition == partition and i.alive]

    def names(self) -> list[str]:
        return sorted({*self.registry.rooms, *(i.partition for i in self.instances.values() if i.alive)})

    def exists(self, partition: str) -> bool:
        return partition in self.registry.rooms or bool(self.of(partition))

    def find(self, partition: str, name: str, rng: str) -> Instance | None:
        """The listening instance of ``name`` in ``partition`` whose version matches ``rng`` (newest)."""
        candidates = {i.version: i for i in self.instances.values()
                      if i.partition == partition and i.name == name and i.status == "listening"}
        if not candidates:
            return None
        version = p.select_version(list(candidates), rng)
        return candidates.get(version) if version else None

    def held(self, partition: str) -> HeldRoom:
        """In a cluster, ``partition`` as its holder sees it: alive while it has a socket, an
        instance or an install under way (the lease ``backends:<partition>`` is kept meanwhile);
        dropped (fencing: the lease was lost) by closing its sockets and stopping its instances,
        which the next holder starts again."""
        def alive() -> bool:
            lock = self._locks.get(partition)
            return self.exists(partition) or (lock is not None and lock.locked())

        async def drop(code: int, reason: str) -> None:
            await self.registry.drop(partition, code, reason)
            await self.stop(self.of(partition), "the partition moved to another hub")

        return HeldRoom(alive=alive, drop=drop)

    def lock(self, partition: str) -> asyncio.Lock:
        """Serialises installs into one partition."""
        return self._locks.setdefault(partition, asyncio.Lock())

    def describe(self, partition: str) -> dict[str, Any]:
        room = self.registry.get(partition)
        return {
            "partitionId": partition,
            "clients": len(room.members) if room else 0,
            "owners": sorted(room.owners) if room else [],
            "idleSeconds": round(time.monotonic() - self._activity.get(partition, time.monotonic()), 1),
            "instances": [i.describe() for i in self.of(partition)],
        }

    # -- events ---------------------------------------------------------------------------

    def publish(self, partition: str, message: dict[str, Any]) -> None:
        """Send ``message`` to the partition's sockets and to the monitor (encoded once)."""
        frame = p.encode(message)
        self.bus.publish(f"{NAMESPACE}\x00{partition}", frame)
        self.bus.publish(f"{MONITOR_NAMESPACE}\x00all", frame)

    def touch(self, partition: str) -> None:
        self._activity[partition] = time.monotonic()

    # -- lifecycle --------------------------------------------------------------------------

    def add(self, inst: Instance) -> None:
        self.instances[inst.uid] = inst

    def owner_back(self, partition: str, owner: str) -> None:
        timer = self._owner_timers.pop((partition, owner), None)
        if timer is not None:
            timer.cancel()

    def owner_gone(self, partition: str, owner: str) -> None:
        key = (partition, owner)
        if key in self._owner_timers or self.registry.closed:
            return
        self._owner_timers[key] = asyncio.create_task(self._owner_expired(partition, owner))

    async def _owner_expired(self, partition: str, owner: str) -> None:
        try:
            await asyncio.sleep(self.grace_period)
        finally:
            self._owner_timers.pop((partition, owner), None)
        owned = [i for i in self.of(partition) if i.owner == owner]
        if owned:
            await self.stop(owned, f"the owning tab {owner} closed")

    async def stop(self, instances: Iterable[Instance], reason: str) -> list[str]:
        """Stop ``instances`` (dependents before their dependencies) and announce it; returns uids."""
        ordered = sorted((i for i in instances if i.alive), key=lambda i: -i.started_at)
        uids: list[str] = []
        for inst in ordered:
            await self.launcher.stop(inst, reason)
            uids.append(inst.uid)
            self.publish(inst.partition, p.event("BackendStopped", uid=inst.uid, partitionId=inst.partition,
                                                 name=inst.name, version=inst.version, reason=reason))
            log.info("backend %s %s (%s) in %s stopped: %s", inst.name, inst.version, inst.uid[:8],
                     inst.partition, reason)
        return uids

    async def terminate(self, partition: str, reason: str = "terminated") -> list[str]:
        """Stop every instance of ``partition`` and close its sockets."""
        uids = await self.stop(self.of(partition), reason)
        await self.registry.drop(partition, reason="partition terminated")
        return uids

    def start_reaper(self) -> None:
        self._reaper = asyncio.create_task(self._reap())

    async def _reap(self) -> None:
        period = max(0.2, min(5.0, self.idle_timeout / 4))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for partition in self.names():
                if partition in self.registry.rooms:
                    continue
                last = max([self._activity.get(partition, 0.0), *(i.last_used for i in self.of(partition))])
                if now - last >= self.idle_timeout:
                    task = asyncio.create_task(self.stop(self.of(partition), "idle timeout"))
                    self._stopping.add(task)
                    task.add_done_callback(self._stopping.discard)
            self.forget_finished()

    def forget_finished(self, keep: int = 200) -> None:
        """Drop records of finished instances beyond the last ``keep`` (their logs go with them)."""
        done = [i for i in self.instances.values() if not i.alive]
        for inst in sorted(done, key=lambda i: i.started_at)[:-keep] if len(done) > keep else []:
            self.instances.pop(inst.uid, None)

    async def close(self, timeout: float) -> None:
        """Shutdown: stop the timers, close the sockets, stop every instance (bounded by ``timeout``)."""
        if self._reaper is not None:
            self._reaper.cancel()
        for timer in list(self._owner_timers.values()):
            timer.cancel()
        await self.registry.close(timeout)
        await self.monitor.close(timeout)
        alive = [i for i in self.instances.values() if i.alive]
        if alive:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*(self.launcher.stop(i, "hub shutting down", grace=2.0) for i in alive),
                                   return_exceptions=True), timeout)
