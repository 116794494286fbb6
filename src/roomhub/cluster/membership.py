"""Hub membership in Redis: each hub's heartbeat key, living ``lease_seconds`` unless renewed.

Keys, under the cluster's ``prefix``:

- ``{prefix}:hub:{hub id}``: the hub's record (JSON: id, run, advertise,
  pid, started, load), written with PX = the lease time at every heartbeat. A
  hub that stops beating (killed, cut from Redis) disappears when it expires;
  a hub that stops cleanly deletes it.
- ``{prefix}:rooms:{hub id}``: the hub's live rooms (a JSON list of room
  descriptions: namespace, name, clients...), written with its record and
  living as long, so that any hub can list every hub's rooms;
- ``{prefix}:hubs``: the set of hub ids that wrote a record, so that listing
  needs no SCAN; ids whose record expired are dropped from it when listed.
"""

from __future__ import annotations

import json
from typing import Any


class Membership:
    """The hubs of the cluster ``prefix`` (``client``: a ``redis.asyncio.Redis``). Every method
    is one round trip and may raise ``redis.RedisError``."""

    def __init__(self, client: Any, prefix: str, lease_seconds: float) -> None:
        self.client = client
        self.prefix = prefix
        self.lease_ms = max(1, round(lease_seconds * 1000))
        self.index = f"{prefix}:hubs"

    def key(self, hub_id: str) -> str:
        return f"{self.prefix}:hub:{hub_id}"

    def rooms_key(self, hub_id: str) -> str:
        return f"{self.prefix}:rooms:{hub_id}"

    async def beat(self, record: dict[str, Any], rooms: list[dict[str, Any]] | None = None) -> None:
        """Write ``record`` (a JSON object with an ``id``) as its hub's heartbeat, and ``rooms`` (its
        live rooms, JSON objects) unless None."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.set(self.key(record["id"]), json.dumps(record), px=self.lease_ms)
            if rooms is not None:
                pipe.set(self.rooms_key(record["id"]), json.dumps(rooms), px=self.lease_ms)
            pipe.sadd(self.index, record["id"])
            await pipe.execute()

    async def record(self, hub_id: str) -> dict[str, Any] | None:
        """``hub_id``'s record, None when its heartbeat expired (or it left)."""
        raw = await self.client.get(self.key(hub_id))
        return json.loads(raw) if raw is not None else None

    async def leave(self, hub_id: str) -> None:
        """Remove ``hub_id`` at once (a clean stop)."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self.key(hub_id), self.rooms_key(hub_id))
            pipe.srem(self.index, hub_id)
            await pipe.execute()

    async def hubs(self) -> list[dict[str, Any]]:
        """The records of the hubs whose heartbeat is alive, by id."""
        ids = sorted(i.decode() for i in await self.client.smembers(self.index))
        if not ids:
            return []
        records = await self.client.mget([self.key(i) for i in ids])
        gone = [i for i, r in zip(ids, records, strict=True) if r is None]
        if gone:
            await self.client.srem(self.index, *gone)
        return [json.loads(r) for r in records if r is not None]

    async def rooms(self) -> dict[str, list[dict[str, Any]]]:
        """Hub id -> the rooms its last heartbeat published, for every hub whose rooms key is alive
        (a hub that publishes none is absent)."""
        ids = sorted(i.decode() for i in await self.client.smembers(self.index))
        if not ids:
            return {}
        lists = await self.client.mget([self.rooms_key(i) for i in ids])
        return {i: json.loads(r) for i, r in zip(ids, lists, strict=True) if r is not None}
