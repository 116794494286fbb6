"""One client connection: a bounded send queue drained by its own writer task.

A slow or stuck client never delays the sender: :meth:`Connection.send`
never awaits. Frames are queued for the writer task, which sends the frames
queued together in one write; a frame sent as ``urgent`` (a lone reply that
someone waits for) leaves at once instead, in the sender's own step, when
nothing is queued and the server offers a synchronous write (see
:mod:`.websocket_server`). When the queue is full the connection is closed
with :attr:`CloseCode.SLOW_CONSUMER` (backpressure by disconnection), so the
room keeps its pace and the client learns why.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from enum import IntEnum

from starlette.datastructures import Address, QueryParams
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from .websocket_server import BATCH_EXTENSION, MORE_KEY, SEND_NOW_KEY

log = logging.getLogger("roomhub.connections")

Frame = str | bytes


class CloseCode(IntEnum):
    """WebSocket close codes used by every face (RFC 6455 section 7.4, plus 4xxx of our own)."""

    NORMAL = 1000
    GOING_AWAY = 1001  # the hub is shutting down
    UNSUPPORTED_DATA = 1003  # e.g. a binary frame on a JSON protocol
    POLICY_VIOLATION = 1008  # read-only client writing, flood of calls, ...
    MESSAGE_TOO_BIG = 1009  # a frame over limits.max_frame_bytes
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013  # a room, client or connection limit is reached
    UNAUTHORIZED = 4001  # token missing or invalid after the handshake
    FORBIDDEN = 4003  # access denied to this room
    NOT_FOUND = 4004  # no such room, session or resource
    SLOW_CONSUMER = 4008  # the client did not read fast enough: its send queue overflowed
    ROOM_FAILED = 4011  # the room could not be created (e.g. a prologue failed)


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


class Connection:
    """A WebSocket (Starlette's or an :class:`AsgiSocket`) with a bounded outgoing queue and a writer task.

    ``queue_size`` is counted in frames. Use :meth:`start` after
    ``websocket.accept()``, then :meth:`send` from anywhere in the event loop.
    """

    def __init__(self, websocket: WebSocket | AsgiSocket, queue_size: int = 1024, label: str = "") -> None:
        self.websocket = websocket
        self.id = next(_ids)
        self.label = label or f"conn-{self.id}"
        self._queue: asyncio.Queue[object] = asyncio.Queue(maxsize=queue_size)
        # Set while the queue is at most a quarter full; producers that can wait use it.
        self.drained = asyncio.Event()
        self.drained.set()
        self._high = max(1, queue_size // 2)
        self._low = queue_size // 4
        self._writer: asyncio.Task[None] | None = None
        self._send_now: Callable[[Frame], bool] | None = None
        self._parked = False  # the writer waits for a frame and none is queued
        self._closer: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[object] | None = None
        self._abandoned = False
        self.closing = False
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed = asyncio.Event()

    @property
    def peer(self) -> str:
        client = self.websocket.client
        return f"{client.host}:{client.port}" if client else "?"

    def start(self) -> None:
        """Start the writer task (call once, after the handshake was accepted)."""
        extension = (self.websocket.scope.get("extensions") or {}).get(BATCH_EXTENSION)
        self._send_now = extension.get(SEND_NOW_KEY) if isinstance(extension, dict) else None
        self._writer = asyncio.create_task(self._write_loop(), name=f"writer:{self.label}")

    def send(self, frame: Frame, urgent: bool = False) -> bool:
        """Queue one frame without waiting. Returns False if the connection is closing.

        ``urgent``: write it at once if nothing is queued (saves the writer task's turn, at
        the cost of one write per frame: for a lone frame, not for a stream of them).

        On overflow the queued frames are dropped and the connection is closed
        with :attr:`CloseCode.SLOW_CONSUMER`.
        """
        if self.closing:
            return False
        if urgent and self._parked and self._send_now is not None and self._send_now(frame):
            return True
        self._parked = False
        try:
            self._queue.put_nowait(frame)
            if self._queue.qsize() >= self._high:
                self.drained.clear()
        except asyncio.QueueFull:
            log.warning("%s (%s): send queue full, closing as slow consumer", self.label, self.peer)
            self.close(CloseCode.SLOW_CONSUMER, "send queue overflow: client too slow")
            return False
        return True

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close after the frames already queued (unless the queue overflowed)."""
        if self.closing:
            return
        self.closing = True
        self.close_code, self.close_reason = int(code), reason[:120]
        self.drained.set()  # nobody should wait for a connection that is going away
        if code == CloseCode.SLOW_CONSUMER and self._writer is not None:
            # The writer is stuck in a send the client does not read: abandon the queue and
            # the send, and close from a fresh task (the server aborts if the close stalls too).
            self._writer.cancel()
            self._closer = asyncio.create_task(self._close_now(), name=f"close:{self.label}")
            return
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(_CLOSE)
        if self._writer is None:
            self.closed.set()

    async def _close_now(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({self._writer}) if self._writer else None
        try:
            await asyncio.wait_for(
                self.websocket.close(self.close_code or CloseCode.NORMAL, self.close_reason), 5.0
            )
        except (TimeoutError, RuntimeError, OSError, WebSocketDisconnect) as exc:
            log.debug("%s: close did not complete: %r", self.label, exc)
        finally:
            self.closed.set()
            # A client that does not read will not answer the close either: stop waiting for it.
            if self._reader is not None and not self._reader.done():
                self._abandoned = True
                self._reader.cancel()

    async def _write_loop(self) -> None:
        ws = self.websocket
        queue = self._queue
        # Frames already queued behind this one leave in the same write when the server can batch.
        batch = BATCH_EXTENSION in (ws.scope.get("extensions") or {})
        try:
            while True:
                self._parked = queue.empty()
                frame = await queue.get()
                self._parked = False
                size = queue.qsize()
                if size <= self._low:
                    self.drained.set()
                if frame is _CLOSE:
                    if ws.application_state == WebSocketState.CONNECTED:
                        await ws.close(self.close_code or CloseCode.NORMAL, self.close_reason)
                    return
                if isinstance(frame, str):
                    message: dict[str, object] = {"type": "websocket.send", "text": frame}
                else:
                    message = {"type": "websocket.send", "bytes": frame}
                if batch and size:
                    message[MORE_KEY] = True
                await ws.send(message)  # type: ignore[arg-type]
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            log.debug("%s: writer stopped: %r", self.label, exc)
        finally:
            self.closing = True
            self.drained.set()
            self.closed.set()

    async def receive(self) -> AsyncIterator[Frame]:
        """Yield client frames (text as ``str``, binary as ``bytes``) until it disconnects."""
        ws = self.websocket
        self._reader = asyncio.current_task()
        while True:
            try:
                message = await ws.receive()
            except (WebSocketDisconnect, RuntimeError):
                self._peer_gone()
                return
            except asyncio.CancelledError:
                if self._abandoned and self._reader is not None:
                    self._reader.uncancel()
                    return
                raise
            if message["type"] == "websocket.disconnect":
                self._peer_gone()
                return
            text = message.get("text")
            if text is not None:
                yield text
            elif message.get("bytes") is not None:
                yield message["bytes"]

    def _peer_gone(self) -> None:
        """The client has gone: nothing can be sent any more, so the writer stops now."""
        self.closing = True
        self.drained.set()
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
        else:
            self.closed.set()

    async def aclose(self, code: int = CloseCode.NORMAL, reason: str = "", timeout: float = 2.0) -> None:
        """Close and wait (bounded, seconds) until the writer has finished."""
        self.close(code, reason)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closed.wait(), timeout)
        if self._writer and not self._writer.done():
            self._writer.cancel()
