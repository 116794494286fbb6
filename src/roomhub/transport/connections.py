"""One client connection: a send queue drained by a writer task while frames wait.

A slow or stuck client never delays the sender: :meth:`Connection.send`
never awaits. Frames are queued for the writer task, which sends the frames
queued together in one write; a frame sent as ``urgent`` (a lone reply that
someone waits for) leaves at once instead, in the sender's own step, when
nothing is queued and the server offers a synchronous write (see
:mod:`.websocket_server`). The queued bytes are counted by the connection's
:class:`~roomhub.transport.send_window.SendWindow` (the one backpressure rule
of every connection): past its hard bound the connection is closed with
:attr:`CloseCode.SLOW_CONSUMER` (backpressure by disconnection), so the
room keeps its pace and the client learns why.

On the receiving side every connection has a :class:`ReceiveBudget` (a token
bucket over the messages it sends) and yields to the event loop after every
:data:`TURN_MESSAGES` messages, so one client sending as fast as it can gets
its share of the hub and no more: over its budget it is simply read no
faster (the server stops reading it, TCP flow control slows it down), and a
client held back for ``limits.receive_throttled_close`` seconds without a
break is closed with :attr:`CloseCode.RATE_LIMITED`. The members of a room
draw from the room's bucket too (:meth:`ReceiveBudget.join`), so a room
together gets its share and no more.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import cast

from starlette.datastructures import Address, QueryParams
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ..core.config import LimitsConfig
from ..core.errors import CloseCode
from .send_window import SLOW_CONSUMER_REASON, SendWindow, SendWindowed
from .traffic import UNCOUNTED, Traffic
from .websocket_server import BATCH_EXTENSION, MORE_KEY, SEND_NOW_KEY, SOCKET_KEY

log = logging.getLogger("roomhub.connections")

Frame = str | bytes


TURN_MESSAGES = 8
"""Messages of one connection handled in one turn of the event loop before others get theirs."""


HELD_RECEIVE_BUFFER = 16 * 1024
"""The kernel's receive buffer (``SO_RCVBUF``, bytes) of a connection while its budget holds it
back. Linux grows a TCP connection's buffer up to ``net.ipv4.tcp_rmem``'s maximum (32 MiB on
some systems): a client over its rate would park megabytes in the hub's kernel and run that far
ahead, spending its machine's CPU on frames the hub reads seconds later. With the buffer small
the client's sends block almost at once, at the pace the hub reads."""


class ReceiveWindow:
    """The receive buffer of one connection's socket: made :data:`HELD_RECEIVE_BUFFER` small while
    the client is held back (:meth:`hold`), given its size back when it is not (:meth:`release`).

    ``sock`` is what asyncio's ``transport.get_extra_info("socket")`` gives (None: nothing to do,
    e.g. not a TCP socket). Errors of ``setsockopt`` are ignored: the buffer is an optimisation.
    """

    __slots__ = ("saved", "sock")

    def __init__(self, sock: socket.socket | None) -> None:
        self.sock = sock
        self.saved: int | None = None  # the size before hold(), while held

    def hold(self) -> None:
        sock = self.sock
        if sock is None or self.saved is not None:
            return
        try:
            saved = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, HELD_RECEIVE_BUFFER)
        except OSError:
            self.sock = None
            return
        # Linux reports twice what was set (its bookkeeping overhead): set back half of it.
        self.saved = max(HELD_RECEIVE_BUFFER, saved // 2)

    def release(self) -> None:
        saved, self.saved = self.saved, None
        if saved is None or self.sock is None:
            return
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, saved)
        except OSError:
            self.sock = None


class ReceiveBudget:
    """A token bucket over the messages one client sends (``limits.receive_*`` keys).

    It holds ``burst`` messages and refills at ``rate`` messages per second
    (0: no limit). :meth:`take` spends one or says how long to wait. The
    client counts as held back from the first message that had to wait until
    its bucket is half full again; :meth:`overdue` gives the reason to close it
    once that lasted ``close_after`` seconds (0: never).

    A client in a room also draws from the room's bucket (:attr:`room`, shared by
    every member, ``limits.room_receive_rate`` and ``room_receive_burst``, see
    :meth:`join`): a message is handled only when both buckets have one, so the
    members of one room together get no more of the hub than one room's share.

    With a :attr:`window` (see :meth:`attach`), the connection's kernel receive buffer is
    made small from the first message that had to wait until a message passes with neither
    bucket held back any more (:class:`ReceiveWindow`).
    """

    __slots__ = ("burst", "close_after", "held_since", "rate", "room", "room_burst", "room_rate",
                 "stamp", "tokens", "window")

    def __init__(self, rate: float, burst: int, close_after: float = 0.0, *, room_rate: float = 0.0,
                 room_burst: int = 1) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.close_after = close_after
        self.tokens = float(burst)
        self.stamp = 0.0  # loop time of the last refill (0: never)
        self.held_since: float | None = None
        self.room: ReceiveBudget | None = None  # the bucket of the room joined (see join)
        self.room_rate = room_rate  # what the bucket of a room this client is the first to join gets
        self.room_burst = room_burst
        self.window: ReceiveWindow | None = None

    @classmethod
    def from_limits(cls, limits: LimitsConfig) -> ReceiveBudget:
        """The budget ``limits`` (``server.limits``) gives each connection, and its rooms."""
        return cls(limits.receive_rate, limits.receive_burst, limits.receive_throttled_close,
                   room_rate=limits.room_receive_rate, room_burst=limits.room_receive_burst)

    def join(self, room: ReceiveBudget | None) -> ReceiveBudget | None:
        """Draw from ``room``'s bucket too from now on, and return it; with None (the room has no
        bucket yet), a new one per this budget's ``room_rate`` and ``room_burst`` (None if
        ``room_rate`` is 0: rooms have no limit of their own)."""
        if room is None and self.room_rate > 0:
            room = ReceiveBudget(self.room_rate, self.room_burst, self.close_after)
        self.room = room
        return room

    def attach(self, sock: socket.socket | None) -> None:
        """Hold back the kernel receive buffer of ``sock`` too when this budget holds the client
        back (``transport.get_extra_info("socket")``; None: nothing to attach)."""
        self.window = ReceiveWindow(sock) if sock is not None else None

    def leave(self) -> None:
        """Draw from the own bucket only (the client left its room)."""
        self.room = None

    def _refill(self, now: float) -> float:
        tokens = self.tokens
        if self.stamp:
            tokens = min(self.burst, tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens = tokens
        return tokens

    def _hold(self, now: float) -> float:
        """Mark the bucket held back (if it was not) and return the seconds until a turn's worth
        (:data:`TURN_MESSAGES`, at most ``burst``) is available."""
        if self.held_since is None:
            self.held_since = now
        return (min(float(TURN_MESSAGES), self.burst) - self.tokens) / self.rate

    def _spend(self) -> None:
        tokens = self.tokens
        self.tokens = tokens - 1.0
        if self.held_since is not None and tokens >= self.burst / 2:
            self.held_since = None

    def take(self, now: float) -> float:
        """Spend one message at loop time ``now`` (seconds) from this bucket and the room's: 0.0,
        or (nothing spent) the seconds until both have a turn's worth (:data:`TURN_MESSAGES`, at
        most ``burst``): a client over its budget is then read in turns, not woken for every
        message."""
        room = self.room
        own = self.rate > 0
        shared = room is not None and room.rate > 0
        if not own and not shared:
            return 0.0
        own_ok = not own or self._refill(now) >= 1.0
        shared_ok = not shared or room._refill(now) >= 1.0  # type: ignore[union-attr]
        if own_ok and shared_ok:
            if own:
                self._spend()
            if shared:
                room._spend()  # type: ignore[union-attr]
            window = self.window
            if (window is not None and window.saved is not None and self.held_since is None
                    and (room is None or room.held_since is None)):
                window.release()
            return 0.0
        wait = 0.0 if own_ok else self._hold(now)
        if not shared_ok:
            wait = max(wait, room._hold(now))  # type: ignore[union-attr]
        if self.window is not None:
            self.window.hold()
        return wait

    def refund(self) -> None:
        """Give back the message just taken: for a message the hub asked for (a browser's answer
        to a widgets call), which flow control already bounds, so that answers never throttle
        the calls they answer."""
        if self.rate > 0:
            self.tokens = min(self.burst, self.tokens + 1.0)
        room = self.room
        if room is not None and room.rate > 0:
            room.tokens = min(room.burst, room.tokens + 1.0)

    def _held_too_long(self, now: float) -> bool:
        since = self.held_since
        return since is not None and self.close_after > 0 and now - since >= self.close_after

    def overdue(self, now: float) -> str | None:
        """Why the client must be closed (with :attr:`CloseCode.RATE_LIMITED`): it, or its room,
        has been held back ``close_after`` seconds or more without a break; None if neither."""
        if self._held_too_long(now):
            return "receive rate limit exceeded"
        room = self.room
        if room is not None and room._held_too_long(now):
            return "room receive rate limit exceeded"
        return None


_CLOSE = object()
_ids = itertools.count(1)


class AsgiSocket:
    """A WebSocket spoken through its ASGI calls, for endpoints served as raw ASGI apps.

    It has what :class:`Connection` uses of Starlette's ``WebSocket`` (``scope``,
    ``client``, ``application_state``, ``send(message)``, ``receive()``, ``close(code,
    reason)``) plus ``accept()``, without the per-message state checks and wrappers of
    Starlette's routing. ``close`` before ``accept`` refuses the handshake (HTTP 403).
    Errors are the server's: uvicorn raises ``OSError`` for a send to a client that has gone
    and ``RuntimeError`` for a send after the close.
    """

    __slots__ = ("application_state", "client", "receive", "scope", "send")

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        client = scope.get("client")
        self.client = Address(*client) if client else None
        self.application_state = WebSocketState.CONNECTING

    @property
    def query_params(self) -> QueryParams:
        return QueryParams(self.scope.get("query_string", b""))

    async def accept(self) -> bool:
        """Wait for the handshake and accept it; False if the client left before."""
        message = await self.receive()
        if message["type"] != "websocket.connect":
            self.application_state = WebSocketState.DISCONNECTED
            return False
        await self.send({"type": "websocket.accept"})
        self.application_state = WebSocketState.CONNECTED
        return True

    async def close(self, code: int = CloseCode.NORMAL, reason: str | None = None) -> None:
        self.application_state = WebSocketState.DISCONNECTED
        await self.send({"type": "websocket.close", "code": code, "reason": reason or ""})


class Connection(SendWindowed):
    """A WebSocket (Starlette's or an :class:`AsgiSocket`) with a bounded outgoing queue.

    ``window`` counts the bytes queued (text frames by their length in characters: the
    faces send ASCII JSON) against its water marks and hard bound (default: those of
    ``server.limits``' defaults); ``budget`` bounds what the client may send (see
    :meth:`next_frame`; None: no bound but the turns). Call :meth:`send` from anywhere in the event
    loop once the handshake was accepted. A writer task drains the queue; it exists
    only while frames wait (started by the first :meth:`send` of a turn, ended when
    the queue is empty), so an idle connection holds no task, queue object or event.
    Frames queued in the same turn leave in one write when the server can batch
    (:data:`~roomhub.transport.websocket_server.BATCH_EXTENSION`).
    """

    __slots__ = (
        "_abandoned", "_batch", "_closer", "_frames", "_reader", "_turn", "_writer", "budget",
        "close_code", "close_reason", "closing", "counted", "id", "label", "traffic", "websocket",
        "window",
    )

    def __init__(self, websocket: WebSocket | AsgiSocket, window: SendWindow | None = None,
                 label: str = "", budget: ReceiveBudget | None = None,
                 traffic: Traffic | None = None) -> None:
        self.websocket = websocket
        self.window = window if window is not None else SendWindow.from_limits(LimitsConfig())
        # The face's counters (messages, bytes, connections, closes by code): see .traffic.
        self.traffic = traffic or UNCOUNTED
        self.traffic.opened += 1
        self.counted = True  # counted as open until aclose()
        self.budget = budget
        self._turn = 0  # messages received since this connection's task last yielded
        self.id = next(_ids)
        self.label = label or f"conn-{self.id}"
        self._frames: deque[object] | None = None  # made when a frame waits, dropped when none does
        # Frames already queued behind one leave in the same write when the server can batch.
        self._batch = BATCH_EXTENSION in (websocket.scope.get("extensions") or {})
        if budget is not None:  # the kernel's receive buffer is held back with the client
            extension = (websocket.scope.get("extensions") or {}).get(BATCH_EXTENSION)
            budget.attach(extension.get(SOCKET_KEY) if isinstance(extension, dict) else None)
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[object] | None = None
        self._abandoned = False
        self.closing = False
        self.close_code: int | None = None
        self.close_reason = ""

    @property
    def peer(self) -> str:
        client = self.websocket.client
        return f"{client.host}:{client.port}" if client else "?"

    @property
    def closed(self) -> bool:
        """True once closing and nothing is being written any more."""
        writer, closer = self._writer, self._closer
        return self.closing and (writer is None or writer.done()) and (closer is None or closer.done())

    def send(self, frame: Frame, urgent: bool = False) -> bool:
        """Queue one frame without waiting. Returns False if the connection is closing.

        ``urgent``: when nothing is queued nor being written, write it at once with the
        server's synchronous write if it offers one (saves the writer task's turn; for a
        lone reply someone waits for, not for a stream of frames).

        Past the send window's hard bound the queued frames are dropped and the
        connection is closed with :attr:`CloseCode.SLOW_CONSUMER` (4008).
        """
        if self.closing:
            return False
        self.traffic.sent(frame)
        if urgent and self._writer is None:
            send_now = self._sync_write()
            if send_now is not None and send_now(frame):
                return True
        if not self.window.add(len(frame)):
            log.warning("%s (%s): %d bytes unsent, closing as slow consumer", self.label, self.peer,
                        self.window.buffered)
            self.close(CloseCode.SLOW_CONSUMER, SLOW_CONSUMER_REASON)
            return False
        frames = self._frames
        if frames is None:
            frames = self._frames = deque()
        frames.append(frame)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop(), name=f"writer:{self.label}")
        return True

    def _sync_write(self) -> Callable[[Frame], bool] | None:
        extension = (self.websocket.scope.get("extensions") or {}).get(BATCH_EXTENSION)
        return extension.get(SEND_NOW_KEY) if isinstance(extension, dict) else None

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close after the frames already queued (unless the queue overflowed)."""
        if self.closing:
            return
        self.closing = True
        self.close_code, self.close_reason = int(code), reason[:120]
        if code != CloseCode.NORMAL:
            self.traffic.closing(self.close_code)
        self.window.release()  # nobody should wait for a connection that is going away
        if code == CloseCode.SLOW_CONSUMER:
            # The writer is stuck in a send the client does not read: abandon the queue and
            # the send, and close from a fresh task (the server aborts if the close stalls too).
            self._drop_frames()
            if self._writer is not None:
                self._writer.cancel()
            self._closer = asyncio.create_task(self._close_now(), name=f"close:{self.label}")
            return
        if self._frames is None:
            self._frames = deque()
        self._frames.append(_CLOSE)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop(), name=f"writer:{self.label}")

    def _drop_frames(self) -> None:
        if self._frames is not None:
            self._frames.clear()  # a writer still holding the deque finds it empty
            self._frames = None

    async def _close_now(self) -> None:
        writer = self._writer
        if writer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({writer})
        try:
            await asyncio.wait_for(
                self.websocket.close(self.close_code or CloseCode.NORMAL, self.close_reason), 5.0
            )
        except (TimeoutError, RuntimeError, OSError, WebSocketDisconnect) as exc:
            log.debug("%s: close did not complete: %r", self.label, exc)
        finally:
            # A client that does not read will not answer the close either: stop waiting for it.
            if self._reader is not None and not self._reader.done():
                self._abandoned = True
                self._reader.cancel()

    async def _write_loop(self) -> None:
        ws = self.websocket
        frames = self._frames
        batch = self._batch
        try:
            while frames:
                frame = frames.popleft()
                if frame is _CLOSE:
                    frames.clear()
                    if ws.application_state == WebSocketState.CONNECTED:
                        await ws.close(self.close_code or CloseCode.NORMAL, self.close_reason)
                    return
                data = cast(Frame, frame)
                if isinstance(data, str):
                    message: dict[str, object] = {"type": "websocket.send", "text": data}
                else:
                    message = {"type": "websocket.send", "bytes": data}
                if batch and frames:
                    message[MORE_KEY] = True
                await ws.send(message)  # type: ignore[arg-type]
                self.window.remove(len(data))
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            log.debug("%s: writer stopped: %r", self.label, exc)
            self.closing = True
            self.window.release()
        finally:
            self._writer = None
            if self._frames is frames and not frames:
                self._frames = None

    async def receive(self) -> AsyncIterator[Frame]:
        """Yield client frames (text as ``str``, binary as ``bytes``) until it disconnects."""
        while (frame := await self.next_frame()) is not None:
            yield frame

    async def next_frame(self) -> Frame | None:
        """The client's next frame (text as ``str``, binary as ``bytes``), None once it disconnected.

        A plain coroutine (no async generator object lives between frames): the loop of a
        long-lived idle connection costs as little as possible.

        Fair share: the task yields to the loop every :data:`TURN_MESSAGES` frames (frames
        already received are otherwise returned without a pause), and a client over its
        :class:`ReceiveBudget` waits here, its next frames left unread meanwhile, so the
        server stops reading it. One held back too long is closed with
        :attr:`CloseCode.RATE_LIMITED` (4029), and None is returned.
        """
        frame = await self._receive()
        if frame is None:
            return None
        self.traffic.received(frame)
        self._turn += 1
        if self._turn >= TURN_MESSAGES:
            self._turn = 0
            await asyncio.sleep(0)
        budget = self.budget
        if budget is not None:
            loop = asyncio.get_running_loop()
            while (wait := budget.take(loop.time())) > 0:
                reason = budget.overdue(loop.time())
                if reason is not None:
                    log.warning("%s (%s): %s for %.0f s, closing", self.label, self.peer, reason,
                                budget.close_after)
                    await self.aclose(CloseCode.RATE_LIMITED, reason)
                    return None
                await asyncio.sleep(wait)
                self._turn = 0
        return frame

    async def _receive(self) -> Frame | None:
        ws = self.websocket
        self._reader = asyncio.current_task()
        while True:
            try:
                message = await ws.receive()
            except (WebSocketDisconnect, RuntimeError):
                self._peer_gone()
                return None
            except asyncio.CancelledError:
                if self._abandoned and self._reader is not None:
                    self._reader.uncancel()
                    return None
                raise
            if message["type"] == "websocket.disconnect":
                self._peer_gone()
                return None
            text = message.get("text")
            if text is not None:
                return text  # type: ignore[no-any-return]
            data = message.get("bytes")
            if data is not None:
                return data  # type: ignore[no-any-return]

    def _peer_gone(self) -> None:
        """The client has gone: nothing can be sent any more, so the writer stops now."""
        self.closing = True
        self._drop_frames()
        self.window.release()
        if self._writer is not None:
            self._writer.cancel()

    async def aclose(self, code: int = CloseCode.NORMAL, reason: str = "", timeout: float = 2.0) -> None:
        """Close and wait (bounded, seconds) until the close frame was written or given up."""
        if self.counted:
            self.counted = False
            self.traffic.closed += 1
        self.close(code, reason)
        pending = {t for t in (self._writer, self._closer) if t is not None and not t.done()}
        if pending and timeout > 0:
            await asyncio.wait(pending, timeout=timeout)
        if self._writer is not None:
            self._writer.cancel()
