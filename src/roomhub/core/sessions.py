"""Sessions: what the hub remembers of one client across reconnects.

A :class:`Session` has a public ``id``, a secret resume ``token`` and a
``data`` dict. While a client holds it, it is *attached*; when the client
goes away it is *detached* and a reaper timer starts. A client that comes
back with the id and the token before ``timeout`` seconds gets the same
session (:meth:`SessionStore.resume`); otherwise the session is reaped.

Reaping happens exactly once per session, on the timer of its *last*
detach: every attach cancels the pending timer, every detach starts a new
one, and a timer that fires for a session attached again (or already
reaped) does nothing. Igor's server looked the timer up under the wrong id,
so a session could be deleted early; this store keys timers by the session
object itself.

The store is also a read-only mapping ``session id -> data dict`` so code
that wants "the sessions" (Igor processes) can read and write them.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..transport.receive_budget import ReceiveBudget

log = logging.getLogger("roomhub.sessions")


class SessionLimitReached(Exception):
    """No new session: ``max_sessions`` sessions are alive (attached or waiting to be reaped)."""


class Session:
    """One client's session. ``data`` is free for the application to use; ``receive_budget``
    (a :class:`~roomhub.transport.receive_budget.ReceiveBudget` or None) is the room bucket its
    connections draw from, kept across reconnects."""

    __slots__ = ("_timer", "attached", "created_at", "data", "detached_at", "id", "reaped",
                 "receive_budget", "token")

    def __init__(self, session_id: str, token: str) -> None:
        self.id = session_id
        self.token = token
        self.data: dict[str, Any] = {}
        self.attached = False
        self.reaped = False
        self.created_at = time.time()
        self.detached_at: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.receive_budget: ReceiveBudget | None = None

    def __repr__(self) -> str:
        state = "reaped" if self.reaped else "attached" if self.attached else "detached"
        return f"<Session {self.id} {state}>"


class SessionStore(Mapping[str, dict[str, Any]]):
    """Sessions of one face, reaped ``timeout`` seconds after their last detach.

    ``max_sessions`` bounds the sessions alive at once (memory); :meth:`create`
    raises :class:`SessionLimitReached` past it. ``new_id()`` makes a session id (default:
    72 random bits, URL-safe base64; a face whose clients expect another form passes its
    own, e.g. widgets' 16 hex digits). Use from the event loop only.
    """

    def __init__(self, timeout: float = 10.0, max_sessions: int = 10000,
                 new_id: Callable[[], str] | None = None) -> None:
        self.timeout = timeout
        self.max_sessions = max_sessions
        self._new_id = new_id or (lambda: secrets.token_urlsafe(9))
        self._sessions: dict[str, Session] = {}
        self._on_reap: list[Callable[[Session], None]] = []
        self.reaped_count = 0

    # -- mapping: session id -> data ----------------------------------------

    def __getitem__(self, session_id: str) -> dict[str, Any]:
        return self._sessions[session_id].data

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._sessions))

    def __len__(self) -> int:
        return len(self._sessions)

    # -- lifecycle -------------------------------------------------------------

    def session(self, session_id: str) -> Session | None:
        """The live session ``session_id``, or None."""
        return self._sessions.get(session_id)

    def live(self) -> list[Session]:
        """Every live session (attached, or detached and not reaped yet)."""
        return list(self._sessions.values())

    def on_reap(self, callback: Callable[[Session], None]) -> None:
        """Call ``callback(session)`` once for every session reaped (or dropped)."""
        self._on_reap.append(callback)

    def create(self) -> Session:
        """A new attached session with a fresh id (``new_id()``) and token (``secrets``, 192 bits)."""
        if len(self._sessions) >= self.max_sessions:
            raise SessionLimitReached(f"{self.max_sessions} sessions are alive")
        session_id = self._new_id()
        while session_id in self._sessions:  # a short id form may repeat: never hand out a live one
            session_id = self._new_id()
        session = Session(session_id, secrets.token_urlsafe(24))
        session.attached = True
        self._sessions[session.id] = session
        return session

    def adopt(self, session_id: str, token: str) -> Session:
        """A detached session ``session_id`` with ``token``, as another process made it (a hub of
        a cluster taking over a dead hub's sessions); reaped after ``timeout`` unless resumed.
        Raises :class:`SessionLimitReached`, or ValueError if the id is live here already."""
        if session_id in self._sessions:
            raise ValueError(f"session {session_id} is live here already")
        if len(self._sessions) >= self.max_sessions:
            raise SessionLimitReached(f"{self.max_sessions} sessions are alive")
        session = Session(session_id, token)
        session.attached = True
        self._sessions[session_id] = session
        self.detach(session)
        return session

    def resume(self, session_id: str, token: str) -> Session | None:
        """The session ``session_id`` if ``token`` is its token, now attached; else None.

        The token is compared in constant time. Resuming an attached session
        is allowed (the holder of the token wins): the caller must detach it
        from its previous client. A pending reap is cancelled.
        """
        session = self._sessions.get(session_id)
        if session is None or not hmac.compare_digest(session.token.encode(), token.encode()):
            return None
        self._cancel_timer(session)
        session.attached = True
        session.detached_at = None
        return session

    def detach(self, session: Session) -> None:
        """The client left: reap ``session`` in ``timeout`` seconds unless it is resumed first."""
        if session.reaped or not session.attached:
            return
        session.attached = False
        session.detached_at = time.monotonic()
        self._cancel_timer(session)
        loop = asyncio.get_running_loop()
        session._timer = loop.call_later(self.timeout, self._expire, session)

    def drop(self, session: Session) -> None:
        """Reap ``session`` now (e.g. a fresh session replaced by a resumed one)."""
        self._cancel_timer(session)
        self._reap(session)

    def close(self) -> None:
        """Reap every session now (shutdown)."""
        for session in list(self._sessions.values()):
            self.drop(session)

    def _cancel_timer(self, session: Session) -> None:
        if session._timer is not None:
            session._timer.cancel()
            session._timer = None

    def _expire(self, session: Session) -> None:
        session._timer = None
        if session.attached:
            return
        log.debug("session %s reaped after %.1f s detached", session.id, self.timeout)
        self._reap(session)

    def _reap(self, session: Session) -> None:
        if session.reaped:
            return
        session.reaped = True
        session.attached = False
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]
        self.reaped_count += 1
        for callback in self._on_reap:
            try:
                callback(session)
            except Exception:
                log.exception("session reap callback failed for %s", session.id)
