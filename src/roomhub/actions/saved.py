"""In a cluster, the actions sessions and the JSON part of ``scope`` kept in Redis.

Every actions client of a cluster is served by the hub holding the room ``actions`` (see
:mod:`roomhub.core.relay`). For a client to resume its session after that hub died, the holder
writes what a session is made of to Redis: ``{prefix}:actions:session:{id}`` holds
``{"token", "data"}`` (JSON; the values of ``data`` that JSON cannot encode are left out),
living ``ttl`` seconds from its last write; ``{prefix}:actions:scope`` holds the JSON-encodable
values of ``scope``. A session is written when it is opened or resumed and when a call of its
client ends (its data may have changed), ``scope`` when a call ends; every live session again
every third of ``ttl``. A session reaped for good (idle timeout, replaced) is deleted. The hub
that takes the room next reads a session when a client presents an id it does not know, and
``scope`` when it serves its first client.

Writes are gathered and sent once per turn of the event loop (one pipeline); a Redis that does
not answer costs the latest writes, never a client's call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from ..core.sessions import Session

log = logging.getLogger("roomhub.actions")


def json_part(values: dict[str, Any]) -> dict[str, Any]:
    """The items of ``values`` JSON can encode (an object with str keys), the others left out."""
    kept = {}
    for key, value in values.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        kept[str(key)] = value
    return kept


class SavedState:
    """The actions sessions and scope of the cluster whose Redis is at ``url``, keys under
    ``prefix``; a session's key lives ``ttl`` seconds after its last write."""

    def __init__(self, url: str, prefix: str, ttl: float) -> None:
        import redis.asyncio as redis

        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.prefix = prefix
        self.ttl_ms = max(1000, round(ttl * 1000))
        self.scope_key = f"{prefix}:actions:scope"
        self.scope_loaded = False
        self._sessions: dict[str, Session] = {}  # to write
        self._gone: set[str] = set()  # to delete
        self._scope: dict[str, Any] | None = None  # to write
        self._flush: asyncio.Task[None] | None = None
        self._refresh: asyncio.Task[None] | None = None

    def key(self, session_id: str) -> str:
        return f"{self.prefix}:actions:session:{session_id}"

    def start(self, live: Callable[[], list[Session]]) -> None:
        """Write every session ``live()`` gives again every third of the time to live, so that a
        connected client's session outlives its holder."""
        self._refresh = asyncio.create_task(self._refresh_loop(live), name="actions-saved-refresh")

    async def close(self) -> None:
        """Stop the refreshes, send what waits (bounded by the client's 2 s timeouts), disconnect."""
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh
        if self._flush is not None:
            await self._flush
        await self.client.aclose()

    # -- writes ------------------------------------------------------------------------------
    def save(self, session: Session) -> None:
        self._gone.discard(session.id)
        self._sessions[session.id] = session
        self._schedule()

    def forget(self, session: Session) -> None:
        self._sessions.pop(session.id, None)
        self._gone.add(session.id)
        self._schedule()

    def save_scope(self, scope: dict[str, Any]) -> None:
        self._scope = scope
        self._schedule()

    def _schedule(self) -> None:
        if self._flush is None or self._flush.done():
            self._flush = asyncio.create_task(self.flush(), name="actions-saved-flush")

    async def flush(self) -> None:
        """Send what was written until nothing waits (one pipeline per round: what is written
        while one is on its way goes with the next)."""
        while self._sessions or self._gone or self._scope is not None:
            await asyncio.sleep(0)  # what this turn of the loop writes goes together
            await self._send()

    async def _send(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        gone, self._gone = self._gone, set()
        scope, self._scope = self._scope, None
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for session in sessions:
                    record = {"token": session.token, "data": json_part(session.data)}
                    pipe.set(self.key(session.id), json.dumps(record), px=self.ttl_ms)
                for session_id in gone:
                    pipe.delete(self.key(session_id))
                if scope is not None:
                    pipe.set(self.scope_key, json.dumps(json_part(scope)))
                await pipe.execute()
        except Exception as exc:
            log.warning("actions: saving %d session(s) to Redis failed: %s", len(sessions), exc)

    async def _refresh_loop(self, live: Callable[[], list[Session]]) -> None:
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            for session in live():
                self.save(session)

    # -- reads --------------------------------------------------------------------------------
    async def load(self, session_id: str) -> tuple[str, dict[str, Any]] | None:
        """The ``(token, data)`` of session ``session_id`` saved by a former holder, or None."""
        try:
            raw = await self.client.get(self.key(session_id))
            record = json.loads(raw) if raw is not None else None
        except Exception as exc:
            log.warning("actions: reading session %s from Redis failed: %s", session_id, exc)
            return None
        if not isinstance(record, dict) or not isinstance(record.get("token"), str):
            return None
        data = record.get("data")
        return record["token"], data if isinstance(data, dict) else {}

    async def load_scope(self) -> dict[str, Any]:
        """The scope a former holder saved (``{}`` if none, or Redis does not answer)."""
        try:
            raw = await self.client.get(self.scope_key)
            scope = json.loads(raw) if raw is not None else {}
        except Exception as exc:
            log.warning("actions: reading the scope from Redis failed: %s", exc)
            return {}
        return scope if isinstance(scope, dict) else {}
