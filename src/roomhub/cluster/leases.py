"""Room leases with fencing tokens, kept in Redis by Lua scripts (atomic on the Redis server).

A lease says which hub holds a room (runs its programs, holds its state) for
``lease_seconds``; its holder renews it well before then. Keys, under the
cluster's ``prefix``:

- ``{prefix}:lease:{room}``: a hash ``owner``, ``token``, expiring (PEXPIRE)
  after the lease's time unless renewed; Redis's own clock decides, so the
  hubs' clocks never matter;
- ``{prefix}:fence:{room}``: the room's fencing counter, never expiring. Each
  acquisition by a new owner increments it, so a token is larger than every
  token given out for the room before. Whatever a holder writes on behalf of
  a room carries its token; a store or a peer that has seen a larger one
  refuses it (the holder was cut off and its lease taken meanwhile). A
  missing counter (the room's first lease, or a Redis that lost its data)
  starts at Redis's clock in microseconds, so tokens keep growing across a
  Redis restart without persistence (unless a room took more than a million
  leases a second on average).

:class:`LeaseTable` is the three operations (acquire, renew, release), each
one script call; it keeps no state. Renew and release need the owner *and*
the token: a holder that lost its lease (expired, taken by another hub) can
neither extend nor drop the new holder's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

# KEYS: lease, fence. ARGV: owner, lease ms.
# Returns {token, owner}: token 0 when another owner holds the lease (owner: that one, and the
# lease's time left in ms: when a look may find it free, unless renewed meanwhile).
ACQUIRE = """
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {tonumber(redis.call('HGET', KEYS[1], 'token')), owner}
end
if owner then
  return {0, owner, redis.call('PTTL', KEYS[1])}
end
local token
if redis.call('EXISTS', KEYS[2]) == 0 then
  local now = redis.call('TIME')
  token = tonumber(now[1]) * 1000000 + tonumber(now[2])
  redis.call('SET', KEYS[2], string.format('%d', token))
else
  token = redis.call('INCR', KEYS[2])
end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', string.format('%d', token))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {token, ARGV[1]}
"""

# KEYS: lease. ARGV: owner, token, lease ms. Returns 1 if renewed, 0 if refused.
RENEW = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] and redis.call('HGET', KEYS[1], 'token') == ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
"""

# KEYS: lease. ARGV: owner, token. Returns 1 if released, 0 if it was not this holder's.
RELEASE = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] and redis.call('HGET', KEYS[1], 'token') == ARGV[2] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Lease:
    """A room held by ``owner`` under fencing ``token`` (a positive integer), until
    ``valid_until`` (``time.monotonic()`` seconds, this process's conservative view: counted
    from before the request that took or renewed it was sent)."""

    room: str
    owner: str
    token: int
    valid_until: float = 0.0

    def valid(self) -> bool:
        return time.monotonic() < self.valid_until


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a room's lease now: ``owner``, ``token``, and ``ttl`` seconds left."""

    room: str
    owner: str
    token: int
    ttl: float


class LeaseTable:
    """The leases of the cluster ``prefix`` in Redis (``client``: a ``redis.asyncio.Redis``);
    ``lease_seconds`` is the time a lease lives without renewal. Every method is one round trip
    and may raise ``redis.RedisError`` (Redis unreachable)."""

    def __init__(self, client: Any, prefix: str, lease_seconds: float) -> None:
        self.client = client
        self.prefix = prefix
        self.lease_ms = max(1, round(lease_seconds * 1000))
        self._acquire = client.register_script(ACQUIRE)
        self._renew = client.register_script(RENEW)
        self._release = client.register_script(RELEASE)

    def lease_key(self, room: str) -> str:
        return f"{self.prefix}:lease:{room}"

    def fence_key(self, room: str) -> str:
        return f"{self.prefix}:fence:{room}"

    async def acquire(self, room: str, owner: str) -> Lease | Holder:
        """Take ``room`` for ``owner`` (or extend it, same token, if ``owner`` holds it already).
        Returns the :class:`Lease`, or the :class:`Holder` that holds it (token unknown: 0; ttl:
        the seconds its lease has left, as Redis counts them)."""
        sent = time.monotonic()
        token, holder, *ttl = await self._acquire(keys=[self.lease_key(room), self.fence_key(room)],
                                                  args=[owner, self.lease_ms])
        holder = holder.decode() if isinstance(holder, bytes) else holder
        if int(token) == 0:
            return Holder(room, holder, 0, max(0, int(ttl[0])) / 1000 if ttl else 0.0)
        return Lease(room, owner, int(token), sent + self.lease_ms / 1000)

    async def renew(self, lease: Lease) -> Lease | None:
        """Extend ``lease``; None if refused (expired, or held by another owner or token)."""
        sent = time.monotonic()
        renewed = await self._renew(keys=[self.lease_key(lease.room)],
                                    args=[lease.owner, lease.token, self.lease_ms])
        if not renewed:
            return None
        return Lease(lease.room, lease.owner, lease.token, sent + self.lease_ms / 1000)

    async def renew_many(self, leases: list[Lease]) -> list[Lease | None]:
        """:meth:`renew` for each of ``leases``, in one round trip (a pipeline); same order."""
        if not leases:
            return []
        sent = time.monotonic()
        async with self.client.pipeline(transaction=False) as pipe:
            for lease in leases:
                await self._renew(keys=[self.lease_key(lease.room)],
                                  args=[lease.owner, lease.token, self.lease_ms], client=pipe)
            replies = await pipe.execute()
        until = sent + self.lease_ms / 1000
        return [Lease(lease.room, lease.owner, lease.token, until) if renewed else None
                for lease, renewed in zip(leases, replies, strict=True)]

    async def release(self, lease: Lease) -> bool:
        """Drop ``lease`` so another hub may take the room at once; False if it was not held."""
        return bool(await self._release(keys=[self.lease_key(lease.room)], args=[lease.owner, lease.token]))

    async def holders(self) -> list[Holder]:
        """Every lease held now, by room name (a SCAN of the prefix: for operators, not hot paths)."""
        start = len(self.lease_key(""))
        pattern = f"{self.prefix}:lease:*"  # the prefix holds no glob character (config)
        keys = sorted([key async for key in self.client.scan_iter(match=pattern, count=1000)])
        if not keys:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(key, "owner", "token")
                pipe.pttl(key)
            replies = await pipe.execute()
        held = []
        for key, (owner, token), ttl in zip(keys, replies[::2], replies[1::2], strict=True):
            if owner is not None and token is not None and ttl > 0:  # expired between SCAN and read
                name = key.decode() if isinstance(key, bytes) else key
                held.append(Holder(name[start:], owner.decode(), int(token), ttl / 1000))
        return held
