r"""The one WebSocket connection type of every face's socket, served without ASGI.

Through uvicorn's ASGI cycle an idle WebSocket holds a task with its
coroutine frames, the scope, uvicorn's protocol state and the endpoint's own
objects: about 19.5 KiB for a bare endpoint on this stack, before any room
state (``bench/documents_floor.py``). Every face's socket is served here
instead: a connection is a :class:`CallbackWebSocket`, the ``websockets``
library's sans-I/O ``ServerProtocol`` (RFC 6455 handshake, framing, close
handshake, automatic pongs, ``max_size``) driven by asyncio's transport
callbacks, one asyncio protocol per connection. Endpoints that answer every
frame synchronously (documents) have their :class:`SocketEndpoint` methods
called for each message, and no task exists while a connection is idle
(about 5 KiB per connection; ``bench/documents_idle_memory.py`` says where it
goes); endpoints whose handling awaits (pages, actions, widgets, the backends'
partition socket) are :class:`TaskSocketEndpoint`\ s: a
task per connection reads its messages from a small inbox
(:meth:`CallbackWebSocket.next_frame`). Both have one send path, one send
window and one slow-consumer close.

The hub's HTTP protocol (:mod:`roomhub.transport.http_server`) hands an upgrade request
whose path is an endpoint's prefix, or lies under it, to
:meth:`CallbackSockets.upgrade`. The handshake passes the hub's
:class:`~roomhub.transport.security.Door` (Host, origin, token: HTTP 400/421, 403, 401
with a JSON ``{"detail"}`` body), then the endpoint's own :meth:`SocketEndpoint.handshake`
check (e.g. 400 for a bad room name).

What each connection gets:

- **nothing of the handshake kept**: the library's handshake protocol parses
  the upgrade request and sends the 101; the connection's frames then go
  through a protocol made for them alone (``websockets.protocol.Protocol``,
  server side, open), since the handshake's parser holds the request,
  headers and all (about 2.5 KiB), for as long as it lives;
- **keepalive**: every ``ping_interval`` seconds a ping; a connection that
  did not answer the previous one is closed with 1011 (as the ``websockets``
  and ``y-websocket`` servers do);
- **one write per turn**: :meth:`CallbackWebSocket.send` never waits; it
  keeps the framed message and the connection is written once per turn of the
  event loop, every frame it is owed joined in one ``transport.write`` (from
  :data:`WRITEV_BYTES` on, handed over unjoined in one ``writelines``, so a large
  frame is not copied);
- **framed once**: a server's frames are not masked (RFC 6455 section 5.1),
  so a message sent to many members is the same bytes for each: a
  :class:`PreparedMessage` is framed once (by the ``websockets`` library's
  ``Frame.serialize``) and every member's :meth:`CallbackWebSocket.send`
  only queues a reference to it. A broadcast hands the same ``str`` or
  ``bytes`` object to each member in turn: the hub's sockets keep the last
  message framed, so a broadcast is framed once without the faces asking;
- **backpressure**: the bytes framed and not yet taken by the kernel are
  counted by the connection's :class:`~roomhub.transport.send_window.SendWindow`
  (the transport's write-buffer limits follow its water marks); a client past
  its hard bound (``limits.send_buffer_bytes``) once written is closed with
  4008 (slow consumer), and its transport is aborted if the close does not
  go through;
- **limits**: a message over ``max_size`` bytes closes with 1009, a malformed
  frame with 1002, text that is not UTF-8 with 1007 (the library's codes);
- **fair share**: what a connection received is parsed :data:`FEED_BYTES`
  at a time and handled :data:`~roomhub.transport.receive_budget.TURN_MESSAGES` frames
  (and at most :data:`TURN_BYTES` bytes) per turn of the event loop; the
  rest waits for a later turn, with the transport's reading paused, so
  other connections' callbacks run in between (one read of a fast sender
  brings up to 256 KiB: thousands of small frames). Each connection also has a
  :class:`~roomhub.transport.receive_budget.ReceiveBudget` (``receive_rate`` frames per
  second, ``receive_burst`` at once), linked to its room's when it joins one
  (``room_receive_rate``, ``room_receive_burst``): over either, its frames wait (reading
  paused: TCP flow control slows the client down), and a client held back
  ``receive_throttled_close`` seconds without a break is closed with 4029;
- **close**: a close frame is answered and the TCP connection closed by the
  server (RFC 6455 section 7.1.1); a client that does not complete the close
  handshake within ``close_timeout`` seconds is aborted. Whatever ends a
  connection (close frame of any status or none, EOF, reset), the endpoint's
  :meth:`SocketEndpoint.closed` is called exactly once, if it was opened.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import struct
from collections import deque
from collections.abc import Iterable
from typing import Any, cast

from websockets import frames as wire
from websockets.frames import Opcode
from websockets.http11 import Request
from websockets.protocol import Protocol, Side, State
from websockets.server import ServerProtocol

from ..core.errors import CloseCode
from .receive_budget import TURN_MESSAGES, ReceiveBudget
from .security import Door
from .send_window import SLOW_CONSUMER_REASON, SendLimits, SendWindow, SendWindowed
from .traffic import UNCOUNTED, Frame, Traffic

log = logging.getLogger("roomhub.websocket")
# The library logs "connection open/closed" at INFO for every client: only its warnings and
# errors are worth a line in the hub's log.
_wire_log = logging.getLogger("roomhub.websocket.wire")
_wire_log.setLevel(logging.WARNING)

FEED_BYTES = 1024
"""Received bytes handed to the frame parser at once (it parses every frame they hold)."""
TURN_BYTES = 256 * 1024
"""Received bytes of one connection parsed in one turn of the event loop, at most."""
INBOX_MESSAGES = TURN_MESSAGES
"""Messages a task-served connection (:class:`TaskSocketEndpoint`) holds unread by its task; while
that many wait, the connection is read no further (TCP flow control slows the client down)."""
_FIN_BINARY = 0x80 | Opcode.BINARY  # a frame's first byte: final fragment, binary
WRITEV_BYTES = 64 * 1024
"""From this many bytes owed in one turn, a connection's frames are handed to the transport as
they are (one ``writelines``: a ``writev`` on uvloop) instead of joined: no copy of a large frame."""
_END = None  # the inbox's last entry once no message can follow (see CallbackWebSocket.next_frame)
_ids = itertools.count(1)


Fragments = tuple[Opcode, list[bytes]]
"""A message's first frames: its opcode (the first frame's) and their payloads."""


def reassemble(fragments: Fragments | None, opcode: Opcode, data: bytes, fin: bool
               ) -> tuple[Fragments | None, Opcode | None, bytes]:
    """One data frame (RFC 6455 section 5.4) added to ``fragments``: ``(fragments kept, the
    message's opcode, its payload)``, the opcode None while the message is incomplete. A
    continuation without a first frame is dropped (the library refuses it already)."""
    if opcode is Opcode.CONT:
        if fragments is None:
            return None, None, b""
        first, parts = fragments
        parts.append(data)
        if not fin:
            return fragments, None, b""
        return None, first, b"".join(parts)
    if not fin:
        return (opcode, [data]), None, b""
    return None, opcode, data


class PreparedMessage:
    """One message framed once, to be sent as is to any number of connections.

    ``message``: ``str`` is sent as a text message (UTF-8), ``bytes`` as binary. :attr:`wire`
    is the complete unmasked frame (header and payload, as the ``websockets`` library's
    ``Frame.serialize`` makes it; no extension is negotiated on the hub's sockets), :attr:`size`
    the payload's length in bytes. Server-to-client frames carry no mask (RFC 6455 section 5.1),
    so the bytes are the same for every member of a room: the peers that price a broadcast per
    member (uWebSockets' and Gorilla's prepared messages) do the same.
    """

    __slots__ = ("size", "wire")

    def __init__(self, message: Frame) -> None:
        if isinstance(message, str):
            payload, opcode = message.encode(), Opcode.TEXT
        else:
            payload, opcode = message, Opcode.BINARY
        self.size = len(payload)
        self.wire = wire.Frame(opcode, payload).serialize(mask=False)

    @classmethod
    def binary(cls, *parts: bytes) -> PreparedMessage:
        """A binary message whose payload is ``parts`` joined, framed in one copy of them.

        The same bytes as ``PreparedMessage(b"".join(parts))``, which copies a payload three
        times (the join, then ``Frame.serialize``'s buffer and its value): for a large message a
        room keeps to send to every joiner (a document's state, hundreds of KiB) the framing
        is most of the cost of a join.
        """
        size = sum(map(len, parts))
        if size < 126:
            header = struct.pack("!BB", _FIN_BINARY, size)
        elif size < 65536:
            header = struct.pack("!BBH", _FIN_BINARY, 126, size)
        else:
            header = struct.pack("!BBQ", _FIN_BINARY, 127, size)
        prepared = cls.__new__(cls)
        prepared.size = size
        prepared.wire = b"".join((header, *parts))
        return prepared

    @property
    def payload(self) -> memoryview:
        """The message's payload (a text message's as UTF-8), a view of :attr:`wire`: no copy."""
        return memoryview(self.wire)[len(self.wire) - self.size:]


class SocketEndpoint:
    """An endpoint served by :class:`CallbackSockets` under ``prefix`` (e.g. ``"/yjs"``).

    Subclasses override the callbacks; all run in the event loop and must not block.
    ``sock.state`` is the endpoint's to use (None at first).
    """

    prefix = ""
    exact = False  # True: the prefix path only, not the paths under it
    traffic: Traffic = UNCOUNTED  # the face's counters, given by the hub (see .traffic)

    def handshake(self, sock: CallbackWebSocket, scope: dict[str, Any]) -> tuple[int, str] | None:
        """Check a handshake the door let through: None accepts, ``(status, message)`` refuses it
        with that HTTP status and ``{"detail": message}``. ``scope`` is ASGI-like (``path``,
        ``query_string``, ``headers`` as lower-case byte pairs, ``client``)."""
        return None

    def opened(self, sock: CallbackWebSocket, scope: dict[str, Any]) -> None:
        """The handshake is done; ``sock`` can send."""

    def received(self, sock: CallbackWebSocket, message: Frame) -> None:
        """One complete message: ``bytes`` for binary, ``str`` for text."""

    def closed(self, sock: CallbackWebSocket) -> None:
        """The connection has ended (called once, only after :meth:`opened`)."""


class TaskSocketEndpoint(SocketEndpoint):
    """An endpoint whose connections each run :meth:`serve` as a task, reading their messages
    with :meth:`CallbackWebSocket.next_frame` (for faces whose handling of a message awaits).

    The task starts when the handshake is done and the connection is closed (1000, or 1011
    after an exception, which is logged) when it returns. Messages wait in the connection's
    inbox (:data:`INBOX_MESSAGES` at most; reading is paused while it is full)."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()

    async def serve(self, sock: CallbackWebSocket, scope: dict[str, Any]) -> None:
        """Serve one connection to its end (``scope`` as for :meth:`SocketEndpoint.handshake`)."""
        raise NotImplementedError

    async def run(self, sock: CallbackWebSocket, scope: dict[str, Any]) -> None:
        """What the connection's task runs: :meth:`serve` (a subclass may decide first where the
        connection is served)."""
        await self.serve(sock, scope)

    def opened(self, sock: CallbackWebSocket, scope: dict[str, Any]) -> None:
        sock.read_by_task()
        task = asyncio.create_task(self._run(sock, scope), name=f"socket:{sock.label}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def received(self, sock: CallbackWebSocket, message: Frame) -> None:
        sock.deliver(message)

    async def _run(self, sock: CallbackWebSocket, scope: dict[str, Any]) -> None:
        try:
            await self.run(sock, scope)
        except Exception:
            log.exception("%s: serving the connection failed", sock.label)
            sock.close(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            sock.close(CloseCode.NORMAL)


class CallbackSockets:
    """The hub's callback WebSocket endpoints and their open connections.

    ``max_size`` (bytes) bounds a message, ``send_limits`` (``server.limits``) gives each
    connection its :class:`~roomhub.transport.send_window.SendWindow`, ``ping_interval`` and
    ``close_timeout`` are in seconds (0 disables pings);
    ``receive_rate`` (frames per second, 0: no limit), ``receive_burst`` (frames) and
    ``receive_throttled_close`` (seconds, 0: never) make each connection's
    :class:`~roomhub.transport.receive_budget.ReceiveBudget`; ``room_receive_rate`` (frames per
    second, 0: no limit) and ``room_receive_burst`` that of the room it joins.
    """

    def __init__(self, door: Door, *, max_size: int, send_limits: SendLimits, ping_interval: float = 20.0,
                 close_timeout: float = 5.0, receive_rate: float = 0.0, receive_burst: int = 1,
                 receive_throttled_close: float = 0.0, room_receive_rate: float = 0.0,
                 room_receive_burst: int = 1) -> None:
        self.door = door
        self.room_receive_rate = room_receive_rate
        self.room_receive_burst = room_receive_burst
        self.receive_rate = receive_rate
        self.receive_burst = receive_burst
        self.receive_throttled_close = receive_throttled_close
        self.max_size = max_size
        self.send_limits = send_limits
        self.ping_interval = ping_interval
        self.close_timeout = close_timeout
        self.endpoints: list[tuple[str, str | None, SocketEndpoint]] = []
        self.open: set[CallbackWebSocket] = set()
        self._pinger: asyncio.Task[None] | None = None
        self._all_closed: asyncio.Event | None = None  # made by stop()
        # The last message a connection framed, and its frame: the members of a room are sent
        # the same object in turn, framed once (see CallbackWebSocket.send).
        self.last_message: object = None
        self.last_prepared = PreparedMessage(b"")
        # Connections owed a write this turn, written together by one callback (see owe()).
        self._owed: list[CallbackWebSocket] = []
        self._flush: asyncio.Handle | None = None

    def add(self, endpoints: Iterable[SocketEndpoint]) -> None:
        for endpoint in endpoints:
            prefix = endpoint.prefix.rstrip("/") or "/"
            under = None if endpoint.exact else prefix.rstrip("/") + "/"
            self.endpoints.append((prefix, under, endpoint))

    def endpoint_for(self, path: str) -> SocketEndpoint | None:
        """The endpoint serving ``path`` (its prefix or under it), or None."""
        for exact, under, endpoint in self.endpoints:
            if path == exact or (under is not None and path.startswith(under)):
                return endpoint
        return None

    def upgrade(self, endpoint: SocketEndpoint, transport: asyncio.Transport, request: bytes) -> None:
        """Take over ``transport``, whose upgrade request (``request``: request line and headers,
        as received) is for ``endpoint``."""
        sock = CallbackWebSocket(self, endpoint)
        sock.connection_made(transport)
        transport.set_protocol(sock)
        sock._receive_handshake(request)

    def start(self) -> None:
        if self.ping_interval > 0 and self._pinger is None:
            self._pinger = asyncio.create_task(self._ping_loop(), name="websocket-keepalive")

    async def stop(self, code: int = CloseCode.GOING_AWAY, reason: str = "hub shutting down",
                   timeout: float = 2.0) -> None:
        """Close every open connection with ``code`` and wait (``timeout`` seconds at most) until
        they are gone; stop the pings."""
        if self._pinger is not None:
            self._pinger.cancel()
            self._pinger = None
        if not self.open:
            return
        self._all_closed = asyncio.Event()
        for sock in list(self.open):
            sock.close(code, reason)
        try:
            await asyncio.wait_for(self._all_closed.wait(), timeout)
        except TimeoutError:
            for sock in list(self.open):
                sock.abort()

    def owe(self, sock: CallbackWebSocket) -> None:
        """``sock`` has framed output: write it at the end of this turn of the loop, once,
        together with whatever else it is sent meanwhile (one callback for every connection)."""
        self._owed.append(sock)
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_soon(self._write_owed)

    def _write_owed(self) -> None:
        owed, self._owed, self._flush = self._owed, [], None
        for sock in owed:
            sock._write()

    def _closed(self, sock: CallbackWebSocket) -> None:
        self.open.discard(sock)
        if not self.open and self._all_closed is not None:
            self._all_closed.set()

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ping_interval)
            for sock in list(self.open):
                sock.keepalive()


def _refusal_body(status: int, message: str) -> tuple[bytes, list[tuple[str, str]]]:
    body = json.dumps({"detail": message}).encode()
    headers = [("Content-Type", "application/json")]
    if status == 401:
        headers.append(("WWW-Authenticate", "Bearer"))
    return body, headers


class CallbackWebSocket(asyncio.Protocol, SendWindowed):
    """One WebSocket connection of a :class:`SocketEndpoint` (see the module).

    ``path`` is the request's path, ``peer`` the client's ``"host:port"``.
    """

    __slots__ = ("_abort_timer", "_backlog", "_fragments", "_inbox", "_inbox_pos", "_label", "_messages",
                 "_owed", "_parked", "_pending", "_ping_unanswered", "_reading_paused", "_turn", "_waiter",
                 "budget", "close_code", "close_reason", "closing", "endpoint", "id", "opened", "path",
                 "peer", "server", "state", "transport", "window", "ws")

    def __init__(self, server: CallbackSockets, endpoint: SocketEndpoint) -> None:
        self.server = server
        self.endpoint = endpoint
        # The handshake's protocol; once the 101 is sent, a framing-only one (see _handshake).
        self.ws: Protocol = ServerProtocol(max_size=server.max_size, logger=_wire_log)
        self.transport: asyncio.Transport | None = None
        self.path = ""
        self.peer = "?"
        self.state: Any = None
        self.id = next(_ids)
        self.opened = False
        self.closing = False
        self.close_code: int | None = None  # set when the hub starts the close
        self.close_reason = ""
        self._label: str | None = None
        self._fragments: Fragments | None = None
        self._ping_unanswered = False
        self._abort_timer: asyncio.TimerHandle | None = None
        self.budget = ReceiveBudget(server.receive_rate, server.receive_burst, server.receive_throttled_close,
                                    room_rate=server.room_receive_rate, room_burst=server.room_receive_burst)
        self.window = SendWindow.from_limits(server.send_limits)
        self._owed = False  # framed output waits for the end of the turn (CallbackSockets.owe)
        # The frames of the messages sent this turn, in order (made on first use: idle, none).
        self._pending: list[bytes] | None = None
        # Received and not handled yet (see _turn_of_work): bytes not parsed, events not handled.
        self._inbox = b""
        self._inbox_pos = 0  # where in _inbox parsing resumes
        self._backlog: list[Request | wire.Frame] = []
        self._turn: asyncio.Handle | None = None  # the next turn of work, while a backlog waits
        self._reading_paused = False
        # Messages waiting for a task-served connection's task (see read_by_task), None otherwise.
        self._messages: deque[Frame | None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._parked = False  # the inbox is full: nothing is handled until the task reads

    @property
    def label(self) -> str:
        """What log lines name the connection by: the endpoint's label (e.g. its room) or the
        path, and the client."""
        return f"{self._label or self.path} ({self.peer})"

    @label.setter
    def label(self, value: str) -> None:
        self._label = value

    @property
    def traffic(self) -> Traffic:
        """The counters of the face serving this connection (see :mod:`.traffic`)."""
        return self.endpoint.traffic


    # -- asyncio protocol callbacks -------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.budget.attach(transport.get_extra_info("socket"))
        # The transport reports when it drained to the low water mark (resume_writing).
        cast(asyncio.Transport, transport).set_write_buffer_limits(high=self.window.high, low=self.window.low)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"{peer[0]}:{peer[1]}"

    def data_received(self, data: bytes) -> None:
        if self._turn is not None or self._parked:  # behind already: the coming turns take it in order
            self._inbox = self._inbox[self._inbox_pos:] + data
            self._inbox_pos = 0
            if not self._reading_paused and self.transport is not None:  # parked: the task reads first
                self._reading_paused = True
                self.transport.pause_reading()
            return
        self._inbox, self._inbox_pos = data, 0
        self._turn_of_work()

    def pause_writing(self) -> None:
        self.window.pause_transport()

    def resume_writing(self) -> None:
        transport = self.transport
        if transport is not None:
            self.window.resume_transport(transport.get_write_buffer_size())

    def eof_received(self) -> bool | None:
        # Never behind a backlog: reading is paused while one waits, so EOF is read after it.
        self.ws.receive_eof()
        self._write()
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.window.release()
        self._pending = None
        if self._turn is not None:
            self._turn.cancel()
            self._turn = None
        self._inbox, self._inbox_pos, self._backlog = b"", 0, []
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None
        self._end_of_messages()
        if self.opened:
            self.opened = False
            self.endpoint.traffic.closed += 1
            self.server._closed(self)
            try:
                self.endpoint.closed(self)
            except Exception:
                log.exception("%s: the endpoint's close callback failed", self.label)

    # -- sending ---------------------------------------------------------------------
    def send(self, message: Frame | PreparedMessage) -> bool:
        """Send one message (``str`` as text, ``bytes`` as binary, or a :class:`PreparedMessage`
        framed already) without waiting.

        False if the connection is closing (the client's close frame may have been read while
        messages it sent before are still being handled). The message is written at the end of
        this turn of the loop with everything else the connection is owed (one write). A client
        whose unsent bytes pass its send window's bound is closed with 4008 (slow consumer)."""
        if self.closing or not self.opened or self.ws.state is not State.OPEN:
            return False
        kind = message.__class__
        if kind is PreparedMessage:
            prepared = cast(PreparedMessage, message)
        elif message is self.server.last_message and (kind is str or kind is bytes):
            # A broadcast: the same (immutable) object handed to every member in turn.
            prepared = self.server.last_prepared
        else:
            prepared = self.server.last_prepared = PreparedMessage(cast(Frame, message))
            self.server.last_message = message
        # The frame goes out ahead of whatever the protocol queued meanwhile (a pong, the close
        # frame that follows every message sent before it): see _write.
        pending = self._pending
        if pending is None:
            self._pending = [prepared.wire]
        else:
            pending.append(prepared.wire)
        self.endpoint.traffic.sent(prepared.size)
        # Counted for the water marks; the bound is checked once written (_write), against what
        # the kernel did not take: what one turn owes leaves at the end of the turn anyway.
        self.window.add(prepared.size)
        if not self._owed:
            self._owed = True
            self.server.owe(self)
        return True

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Start the close handshake with ``code`` and ``reason`` (at most 120 bytes of it);
        the TCP connection is aborted if it is not closed ``close_timeout`` seconds later."""
        if self.closing and self._abort_timer is not None:
            return
        if not self.closing:
            if code != CloseCode.NORMAL:
                self.endpoint.traffic.closing(code)
            self.close_code, self.close_reason = int(code), reason
        self.closing = True
        if self.ws.state is State.OPEN:
            self.ws.send_close(code, reason.encode()[:120].decode(errors="ignore"))
            self._write()
        transport = self.transport
        if transport is not None and not transport.is_closing() and self._abort_timer is None:
            self._abort_timer = asyncio.get_running_loop().call_later(self.server.close_timeout, self.abort)

    # -- receiving, for a task (TaskSocketEndpoint) -------------------------------------
    def read_by_task(self) -> None:
        """Keep received messages for :meth:`next_frame` (called once, when opened)."""
        self._messages = deque()

    def deliver(self, message: Frame) -> None:
        """Keep ``message`` for :meth:`next_frame`; a full inbox stops the handling of what
        follows until the task read some (reading is paused meanwhile)."""
        messages = self._messages
        if messages is None:
            return
        messages.append(message)
        if len(messages) >= INBOX_MESSAGES:
            self._parked = True
            window = self.budget.window
            if window is not None:  # reading pauses: the kernel need not take megabytes meanwhile
                window.parked = True
                window.hold()
        self._wake()

    async def next_frame(self) -> Frame | None:
        """The client's next message (text as ``str``, binary as ``bytes``), None once no more
        can come (the client closed, the connection was lost, or the hub closed it and the
        client answered). Messages received before a close are still returned first. Rate
        limits and fair share apply when they are read off the socket (see the module)."""
        messages = self._messages
        if messages is None:
            return None
        while not messages:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        message = messages[0]
        if message is _END:
            return None
        messages.popleft()
        if self._parked and len(messages) < INBOX_MESSAGES:
            self._parked = False
            window = self.budget.window
            if window is not None:  # its size comes back with the next message read within budget
                window.parked = False
            transport = self.transport
            if self._turn is None and transport is not None and not transport.is_closing():
                self._turn = asyncio.get_running_loop().call_soon(self._turn_of_work)
        return message

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _end_of_messages(self) -> None:
        messages = self._messages
        if messages is not None and (not messages or messages[-1] is not _END):
            messages.append(_END)
            self._wake()

    def abort(self) -> None:
        """Drop the TCP connection now."""
        if self.transport is not None:
            self.transport.abort()

    def keepalive(self) -> None:
        """Ping, or close with 1011 when the previous ping went unanswered and nothing the
        client sent waits unread (called periodically)."""
        if self.closing or self.ws.state is not State.OPEN:
            return
        # A client whose frames wait unread (a backlog, reading paused) may have answered already.
        if self._ping_unanswered and not self._reading_paused:
            log.info("%s: keepalive ping unanswered, closing", self.label)
            self.close(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
            if self.transport is not None:  # a peer that does not answer pings will not close
                self.transport.close()
            return
        self._ping_unanswered = True
        self.ws.send_ping(b"")
        self._write()

    # -- internals ---------------------------------------------------------------------
    def _turn_of_work(self) -> None:
        """Handle at most a turn's worth of what was received (see the module's fair share);
        pause reading and come back in a later turn of the loop if some is left."""
        self._turn = None
        ws, budget = self.ws, self.budget
        loop = asyncio.get_running_loop()
        events, index, frames, parsed, wait = self._backlog, 0, 0, 0, 0.0
        while frames < TURN_MESSAGES and not self._parked:
            if index == len(events):
                inbox, pos = self._inbox, self._inbox_pos
                if pos == len(inbox) or parsed >= TURN_BYTES:
                    break
                chunk = inbox[pos:pos + FEED_BYTES]
                self._inbox_pos = pos + len(chunk)
                parsed += len(chunk)
                ws.receive_data(chunk)
                events, index = ws.events_received(), 0
                continue
            event = events[index]
            if self.opened and not self.closing:
                wait = budget.take(loop.time())
                if wait > 0:
                    reason = budget.overdue(loop.time())
                    if reason is not None:
                        log.warning("%s: %s for %.0f s, closing", self.label, reason, budget.close_after)
                        self.close(CloseCode.RATE_LIMITED, reason)
                        wait = 0.0  # what is left is only read for the close handshake
                        continue
                    break
            index += 1
            frames += 1
            opcode = event.opcode
            if opcode is Opcode.BINARY or opcode is Opcode.TEXT or opcode is Opcode.CONT:
                self._frame(opcode, event.data, event.fin)
            elif opcode is Opcode.PONG:
                self._ping_unanswered = False
            elif opcode is Opcode.CLOSE:
                self.closing = True
                self._end_of_messages()
        self._backlog = events[index:] if index < len(events) else []
        self._write()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._inbox_pos == len(self._inbox):
            self._inbox, self._inbox_pos = b"", 0
        if self._backlog or self._inbox:
            if not self._reading_paused:
                self._reading_paused = True
                transport.pause_reading()
            if self._parked:  # next_frame schedules the next turn once the task has read
                return
            if wait:
                self._turn = loop.call_later(wait, self._turn_of_work)
            else:
                self._turn = loop.call_soon(self._turn_of_work)
            return
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()

    def _write(self) -> None:
        """Write everything framed so far in one ``transport.write`` (``writelines`` from
        :data:`WRITEV_BYTES` on): the messages sent (in order), then what the protocol queued
        (pongs, pings, the close frame)."""
        self._owed = False
        data = self.ws.data_to_send()
        pending = self._pending
        if pending is not None:
            self._pending = None
            data = pending + data if data else pending
        elif not data:
            return
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        eof = data[-1] == b""  # the library's end of stream: the server closes TCP now
        if eof:
            data.pop()
        if data:
            if len(data) > 1 and sum(map(len, data)) >= WRITEV_BYTES:
                transport.writelines(data)
            else:
                transport.write(b"".join(data))  # one item: joined without a copy
            if not self.window.written(transport.get_write_buffer_size()) and not self.closing:
                log.warning("%s: %d bytes unsent, closing as slow consumer", self.label, self.window.buffered)
                self.close(CloseCode.SLOW_CONSUMER, SLOW_CONSUMER_REASON)
        if eof:
            transport.close()

    def _receive_handshake(self, head: bytes) -> None:
        """Answer the upgrade request ``head`` (request line and headers, nothing after them):
        accept it (the connection opens), or refuse it, or let the library answer a head it
        cannot parse (e.g. 431 for a header line over its limit), then close."""
        handshake = self.ws
        handshake.receive_data(head)
        for event in handshake.events_received():
            if isinstance(event, Request):
                self._handshake(event)
        if self.ws is handshake:  # refused: the answer (and the library's end of stream) leaves now
            self._write()

    def _handshake(self, request: Request) -> None:
        handshake = cast(ServerProtocol, self.ws)
        path, _, query = request.path.partition("?")
        self.path = path
        transport = self.transport
        client = transport.get_extra_info("peername") if transport is not None else None
        local = transport.get_extra_info("sockname") if transport is not None else None
        scope = {
            "type": "websocket", "path": path, "query_string": query.encode("latin-1"),
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1"))
                        for k, v in request.headers.raw_items()],
            "client": tuple(client[:2]) if isinstance(client, tuple) else None,
            "server": tuple(local[:2]) if isinstance(local, tuple) else None,
        }
        refusal = self.server.door.refusal(scope) or self.endpoint.handshake(self, scope)
        if refusal is not None:
            status, message = refusal
            response = handshake.reject(status, message)
            body, headers = _refusal_body(status, message)
            response.body = body
            del response.headers["Content-Type"], response.headers["Content-Length"]
            for key, value in [*headers, ("Content-Length", str(len(body)))]:
                response.headers[key] = value
            handshake.send_response(response)
            return
        response = handshake.accept(request)
        handshake.send_response(response)
        if response.status_code != 101:
            log.info("%s: bad WebSocket handshake: %s", self.label, handshake.handshake_exc)
            return
        self._write()  # the 101 leaves before anything the endpoint sends
        # From here on only frames: a protocol made for them alone replaces the handshake's, whose
        # parser holds the request (headers and all) for as long as it lives. The head was all
        # it was given (see _receive_handshake), so no byte of the client's frames is lost.
        self.ws = Protocol(Side.SERVER, max_size=self.server.max_size, logger=_wire_log)
        self.opened = True
        self.endpoint.traffic.opened += 1
        self.server.open.add(self)
        try:
            self.endpoint.opened(self, scope)
        except Exception:
            log.exception("%s: the endpoint's open callback failed", self.label)
            self.close(CloseCode.INTERNAL_ERROR, "internal error")

    def _frame(self, opcode: Opcode, data: bytes, fin: bool) -> None:
        if self.closing or not self.opened:
            return
        if opcode is Opcode.CONT or not fin:  # a fragment: most messages are one frame
            self._fragments, whole, data = reassemble(self._fragments, opcode, data, fin)
            if whole is None:
                return
            opcode = whole
        message: Frame = data
        if opcode is Opcode.TEXT:
            try:
                message = data.decode()
            except UnicodeDecodeError as exc:
                self.close(CloseCode.INVALID_PAYLOAD, f"invalid UTF-8 at position {exc.start}")
                return
        self.endpoint.traffic.received(len(data))
        try:
            self.endpoint.received(self, message)
        except Exception:
            log.exception("%s: handling a message failed", self.label)
            self.close(CloseCode.INTERNAL_ERROR, "internal error")
