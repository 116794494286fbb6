"""Actions state: the hub-wide scope and sessions, and each connected client's calls.

:class:`ActionsState` is shared by every client and process: the API, the
``scope`` dict, the :class:`~roomhub.core.sessions.SessionStore` (resume tokens,
reaped ``session_timeout`` seconds after the last disconnect, exactly once),
the thread pool of plain-function handlers, the clients by session id and
by the client id they took with ``introduce_self``. Process output reaches
clients through the hub's bus (topic ``actions`` for everyone,
``actions\\x00<session id>`` for one client), encoded once.

:class:`Client` is one connection: it decodes frames, starts a task per
call (any number run at once, up to ``max_calls_per_client``), cancels them
on request or on disconnect, and enforces the call rate.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..core.bus import Bus
from ..core.errors import CloseCode
from ..core.metrics import HubMetrics
from ..core.sessions import Session, SessionStore
from ..transport.callback_websocket import CallbackWebSocket
from . import protocol as p
from .api import ActionsAPI
from .calls import Stream, run_call
from .config import ActionsConfig
from .saved import SavedState

log = logging.getLogger("roomhub.actions")

TOPIC = "actions"
_WRONG_TOKEN = "unknown session or wrong token (send the token from the session frame)"
SESSION_TAKEN = CloseCode.SESSION_TAKEN
MAX_LOGGED_ERRORS = 5  # bad frames logged per connection (then one summary line)


def session_topic(session_id: str) -> str:
    return f"{TOPIC}\x00{session_id}"


class ClientSessions(Mapping[str, dict[str, Any]]):
    """The sessions' data by session id, as processes get them (``sessions``). As in Igor, whose
    sessions were keyed by client id, the id a connection took with ``introduce_self`` finds
    that connection's session too (iteration gives session ids only)."""

    def __init__(self, state: ActionsState) -> None:
        self._state = state

    def __getitem__(self, client_id: str) -> dict[str, Any]:
        client = self._state.named.get(client_id)
        return client.session.data if client is not None else self._state.sessions[client_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._state.sessions)

    def __len__(self) -> int:
        return len(self._state.sessions)


class ActionsState:
    """What every client and process of the actions face shares."""

    def __init__(
        self,
        api: ActionsAPI,
        config: ActionsConfig,
        bus: Bus,
        *,
        debug: bool,
        max_frame_bytes: int,
        max_json_depth: int,
    ) -> None:
        self.api = api
        self.config = config
        self.bus = bus
        self.debug = debug
        self.max_frame_bytes = max_frame_bytes
        self.max_json_depth = max_json_depth  # levels of a client's JSON frame
        self.metrics: HubMetrics | None = None  # the hub's: calls by outcome and duration
        self.scope: dict[str, Any] = {}
        self.sessions = SessionStore(config.session_timeout, config.max_sessions)
        self.clients: dict[str, Client] = {}
        self.named: dict[str, Client] = {}  # client ids taken with introduce_self (Igor's)
        self.client_sessions = ClientSessions(self)
        self.pool = ThreadPoolExecutor(config.thread_pool_size, thread_name_prefix="roomhub-action")
        # In a cluster: sessions and scope kept in Redis for the next holder (see .saved).
        self.saved: SavedState | None = None
        self._keep_saved = False  # sessions reaped now stay saved (fencing, shutdown)
        self.sessions.on_reap(self._reaped)

    def open(
        self, conn: CallbackWebSocket, session_id: str | None, token: str | None, additions: bool = False
    ) -> Client:
        """A client for ``conn`` with its session resumed (if id and token match) or new; the
        session frame is sent first when the client asked for roomhub's ``additions``.

        Raises :class:`~roomhub.core.sessions.SessionLimitReached`.
        """
        session = self.sessions.resume(session_id, token) if session_id and token else None
        resumed = session is not None
        if session is None:
            session = self.sessions.create()
        client = Client(self, conn, session, additions)
        self._attach(client, session)
        if self.saved is not None:
            self.saved.save(session)
        if additions:
            conn.send(p.welcome(session.id, session.token, resumed, self.sessions.timeout))
        return client

    def introduce(self, client: Client, client_id: str, token: str | None) -> tuple[bool, str | None]:
        """Igor's ``introduce_self``: ``client`` takes the client id ``client_id``.

        With ``token``, the session ``client_id`` is resumed (its data with it). Without, the
        connection is only named ``client_id``, as Igor did, so a process's
        ``send(..., client_id=client_id)`` reaches it; the last connection to take a name holds it.
        The id of another live session is not a free name: it needs that session's token.
        Returns ``(resumed, refusal)``: ``refusal`` is None when it worked, else why not.
        """
        if token is not None:
            if client_id == client.session.id:
                same = hmac.compare_digest(token.encode(), client.session.token.encode())
                return False, None if same else _WRONG_TOKEN
            session = self.sessions.resume(client_id, token)
            if session is None:
                return False, _WRONG_TOKEN
            old = client.session
            self._detach(client)
            self.sessions.drop(old)
            self._attach(client, session)
            self._rename(client, None)
            return True, None
        if client_id == client.session.id or client_id == client.name:
            return False, None
        if client_id in self.sessions:
            return False, f"client id {client_id!r} is another session's: send its token to resume it"
        self._rename(client, client_id)
        return False, None

    def _rename(self, client: Client, name: str | None) -> None:
        if client.name is not None and self.named.get(client.name) is client:
            del self.named[client.name]
        client.name = name
        if name is None:
            return
        previous = self.named.get(name)
        if previous is not None:
            log.info("client id %r taken by %s from %s", name, client.conn.peer, previous.conn.peer)
            previous.name = None
        self.named[name] = client

    def leave(self, client: Client) -> None:
        """The connection ended: cancel its calls, start its session's reap timer."""
        client.cancel_all()
        self._rename(client, None)
        if self.clients.get(client.session.id) is client:
            self._detach(client)
            self.sessions.detach(client.session)

    def _attach(self, client: Client, session: Session) -> None:
        previous = self.clients.get(session.id)
        if previous is not None and previous is not client:
            log.info(
                "session %s resumed by %s: closing %s",
                session.id,
                client.conn.peer,
                previous.conn.peer,
            )
            self._detach(previous)
            previous.cancel_all()
            previous.conn.close(SESSION_TAKEN, "session resumed by another connection")
        client.session = session
        self.clients[session.id] = client
        budget = client.conn.budget
        if budget is not None:  # the session is the client's room: one bucket across reconnects
            session.receive_budget = budget.join(session.receive_budget)
        send = client.conn.send
        client.unsubscribe = [
            self.bus.subscribe(TOPIC, send),
            self.bus.subscribe(session_topic(session.id), send),
        ]

    def _detach(self, client: Client) -> None:
        if client.conn.budget is not None:
            client.conn.budget.leave()
        for unsubscribe in client.unsubscribe:
            unsubscribe()
        client.unsubscribe = []
        if self.clients.get(client.session.id) is client:
            del self.clients[client.session.id]

    def broadcast(self, frame: str) -> None:
        """Send an encoded frame to every connected client."""
        self.bus.publish(TOPIC, frame)

    def client(self, client_id: str) -> Client | None:
        """The connected client named ``client_id`` (``introduce_self``) or holding that session."""
        return self.named.get(client_id) or self.clients.get(client_id)

    def send_to(self, client_id: str, frame: str) -> bool:
        """Send an encoded frame to the client :meth:`client` finds; False if none is here."""
        client = self.client(client_id)
        if client is None:
            return False
        self.bus.publish(session_topic(client.session.id), frame)
        return True

    async def restore(self, session_id: str | None, token: str | None) -> None:
        """In a cluster, before :meth:`open`: the scope a former holder saved (the first time this
        hub serves the room), and the session ``session_id`` if this hub does not know it and a
        former holder saved it under ``token``. Raises
        :class:`~roomhub.core.sessions.SessionLimitReached`."""
        saved = self.saved
        if saved is None:
            return
        if not saved.scope_loaded:
            saved.scope_loaded = True
            for key, value in (await saved.load_scope()).items():
                self.scope.setdefault(key, value)  # what the processes set here already stays
        if not session_id or not token or self.sessions.session(session_id) is not None:
            return
        found = await saved.load(session_id)
        if found is None or not hmac.compare_digest(found[0].encode(), token.encode()):
            return
        if self.sessions.session(session_id) is None:  # not restored meanwhile by another client
            self.sessions.adopt(session_id, token).data.update(found[1])
            log.info("session %s restored from the cluster's Redis", session_id)

    def _reaped(self, session: Session) -> None:
        if self.saved is not None and not self._keep_saved:
            self.saved.forget(session)

    def _reap_all_kept_saved(self) -> None:
        """Reap every session here, leaving them saved for the next holder."""
        self._keep_saved = True
        try:
            self.sessions.close()
        finally:
            self._keep_saved = False

    def alive(self) -> bool:
        """Whether a client is connected or a session is kept for one to come back."""
        return bool(self.clients) or len(self.sessions) > 0

    async def drop(self, code: int, reason: str) -> None:
        """End everything clients share here: every call cancelled, every client closed with
        ``code`` and ``reason``, every session reaped, the scope emptied (in a cluster, when the
        lease of the actions room is lost: another hub holds them from now on)."""
        clients = list(self.clients.values())
        for client in clients:
            client.cancel_all()
            client.conn.close(code, reason)
        self._reap_all_kept_saved()
        self.scope.clear()
        if self.saved is not None:
            self.saved.scope_loaded = False  # read again if this hub holds the room again

    async def close(self) -> None:
        """Cancel every call, close every client (1001), reap every session, stop the pool."""
        clients = list(self.clients.values())
        tasks = [t for c in clients for t in c.calls.values()]
        for client in clients:
            client.cancel_all()
            client.conn.close(CloseCode.GOING_AWAY, "hub shutting down")
        if tasks:
            await asyncio.wait(tasks, timeout=2)
        self._reap_all_kept_saved()  # in a cluster another hub may resume them
        self.pool.shutdown(wait=False, cancel_futures=True)


class Client:
    """One connection's session and running calls (keyed by stream id)."""

    def __init__(
        self, state: ActionsState, conn: CallbackWebSocket, session: Session, additions: bool = False
    ) -> None:
        self.state = state
        self.conn = conn
        self.session = session
        self.additions = additions  # asked for the session frame and answers to introduce_self
        self.name: str | None = None  # the client id taken with introduce_self
        self.calls: dict[str, asyncio.Task[None]] = {}
        self.streams: dict[str, Stream] = {}
        self.unsubscribe: list[Callable[[], None]] = []
        self.loop = asyncio.get_running_loop()
        rate = state.config.max_calls_per_second
        self._rate = rate
        self._allowance = float(rate or 0)
        self._last = time.monotonic()
        self._errors = 0

    def handle(self, frame: str | bytes) -> None:
        """Handle one client frame without waiting (a call becomes a task)."""
        limit = self.state.max_frame_bytes
        if len(frame) > limit or (
            isinstance(frame, str) and len(frame) * 4 > limit and len(frame.encode()) > limit
        ):
            self._bad(p.ProtocolError(p.TOO_LARGE, f"frame larger than {limit} bytes"))
            self.conn.close(CloseCode.MESSAGE_TOO_BIG, f"frame larger than {limit} bytes")
            return
        try:
            msg = p.decode(frame, self.state.max_json_depth)
        except p.ProtocolError as exc:
            self._bad(exc)
            return
        if isinstance(msg, p.Cancel):
            self.cancel(msg.stream_id)
        elif isinstance(msg, p.Introduce):
            self._introduce(msg)
        elif self._within_rate():
            self._start(msg)

    def _start(self, call: p.Call) -> None:
        sid = call.stream_id
        if sid in self.calls:
            self._bad(p.ProtocolError(p.STREAM_IN_USE, f"streamId {sid!r} is already in use"))
            return
        handler = self.state.api.handlers.get(call.action)
        if handler is None:
            self._bad(p.ProtocolError(p.UNKNOWN_ACTION, f'No handler for action: "{call.action}"', sid))
            return
        if len(self.calls) >= self.state.config.max_calls_per_client:
            limit = self.state.config.max_calls_per_client
            self._bad(p.ProtocolError(p.TOO_MANY_CALLS, f"more than {limit} calls running at once", sid))
            return
        kwargs: dict[str, Any] = {}
        if "session" in handler.kwargs:
            kwargs["session"] = self.session.data
        if "scope" in handler.kwargs:
            kwargs["scope"] = self.state.scope
        stream = Stream(sid, self.conn.send, self.loop)
        stream.on_end = self._ended
        self.calls[sid] = self.loop.create_task(
            run_call(handler, stream, call.data, kwargs, self.state.pool, self.state.debug,
                     self.state.metrics)
        )
        self.streams[sid] = stream

    def _ended(self, stream: Stream) -> None:
        sid = stream.stream_id
        if self.streams.get(sid) is stream:
            del self.calls[sid]
            del self.streams[sid]
        saved = self.state.saved
        if saved is not None:  # the call may have changed the session's data or the scope
            saved.save(self.session)
            saved.save_scope(self.state.scope)

    def cancel(self, sid: str) -> None:
        """Cancel the running call ``sid`` (answered by a cancelled ``close``); unknown: ignored."""
        task = self.calls.get(sid)
        if task is None:
            return
        stream = self.streams[sid]
        stream.cancel_requested = True
        task.cancel()
        if not stream.started:  # cancelled in the same batch of frames: its body never runs
            stream.closed = True
            self.conn.send(p.close(sid, cancelled=True))
            self._ended(stream)

    def cancel_all(self) -> None:
        """Cancel every running call silently (the client is gone)."""
        for stream in list(self.streams.values()):
            stream.closed = True
            self.calls[stream.stream_id].cancel()
            if not stream.started:
                self._ended(stream)

    def _introduce(self, msg: p.Introduce) -> None:
        resumed, refusal = self.state.introduce(self, msg.client_id, msg.token)
        if refusal is not None:
            self._bad(p.ProtocolError(p.BAD_REQUEST, f"introduce_self: {refusal}", msg.stream_id))
        elif self.additions:  # Igor answers nothing: its clients would read a reply as a call's
            self.conn.send(p.introduced(msg.stream_id, msg.client_id, self.session.id, resumed))
            self.conn.send(p.close(msg.stream_id))

    def _within_rate(self) -> bool:
        if not self._rate:
            return True
        now = time.monotonic()
        self._allowance = min(self._rate, self._allowance + (now - self._last) * self._rate)
        self._last = now
        if self._allowance >= 1:
            self._allowance -= 1
            return True
        reason = f"call flood: more than {self._rate:g} calls per second"
        log.warning("actions client %s: %s, closing", self.conn.peer, reason)
        self.cancel_all()
        self.conn.close(CloseCode.POLICY_VIOLATION, reason)
        return False

    def _bad(self, exc: p.ProtocolError) -> None:
        self._errors += 1
        if self._errors <= MAX_LOGGED_ERRORS:
            log.info("actions client %s: %s (%d)", self.conn.peer, exc.message, exc.code)
            if self._errors == MAX_LOGGED_ERRORS:
                log.info("actions client %s: further bad frames are not logged", self.conn.peer)
        if exc.stream_id is None:
            self.conn.send(p.protocol_error(exc.message, exc.code))
        else:
            self.conn.send(p.error(exc.stream_id, exc.message, exc.code))
            self.conn.send(p.close(exc.stream_id))
