"""A client WebSocket driven by transport callbacks: a hub's connection to another hub.

In a cluster a relaying hub opens one to the hub holding a room for each member it relays
(:mod:`roomhub.core.relay`). It is the ``websockets`` library's sans-I/O ``ClientProtocol``
(RFC 6455 handshake, masking, framing, close handshake, automatic pongs) driven by asyncio's
protocol callbacks, as the hub's own server sockets are (:mod:`.callback_websocket`): a
message from the holder is handed to ``on_message`` in the callback that read it, with no
task woken, no queue and no future per message (the library's asyncio client has them all;
they made the relaying hub's cost per relayed message the larger part of its CPU), and the
messages sent in one turn of the loop leave in one ``transport.write``.

Flow control is the caller's: :meth:`ClientWebSocket.pause_reading` stops reading from the
holder (TCP then holds it back) while the member cannot take more; :meth:`ClientWebSocket.drain`
waits while the holder does not read what is sent to it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from typing import cast

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHandshake
from websockets.frames import Close, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

from .callback_websocket import Fragments, reassemble

log = logging.getLogger("roomhub.transport.client")

CLOSE_TIMEOUT = 10.0
"""Seconds a closing connection waits for the other side's close frame and end of stream
before its TCP connection is aborted."""

OnMessage = Callable[[str | bytes], None]
"""Called with each message received (``str``: text, ``bytes``: binary), in order."""


class ClientWebSocket(asyncio.Protocol):
    """One client connection; open it with :meth:`connect`.

    ``protocol`` is the library's ``ClientProtocol`` (``protocol.close_rcvd``: the other
    side's close frame, if any). :attr:`closed` resolves when the TCP connection is gone."""

    def __init__(self, uri: str, on_message: OnMessage, max_size: int | None,
                 ping_interval: float | None) -> None:
        target = parse_uri(uri)
        self.protocol = ClientProtocol(target, max_size=max_size)
        self.address = f"{target.host}:{target.port}"  # for logs
        self.on_message = on_message
        self.ping_interval = ping_interval
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._fragments: Fragments | None = None
        self._write_owed = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._ping_unanswered = False
        self._timer: asyncio.TimerHandle | None = None  # the next ping, or the close's abort

    @classmethod
    async def connect(cls, uri: str, on_message: OnMessage, *, headers: Sequence[tuple[str, str]] = (),
                      open_timeout: float = 10.0, ping_interval: float | None = None,
                      max_size: int | None = None) -> ClientWebSocket:
        """Open a connection to ``uri`` (``ws://host:port/path?query``) with ``headers`` added
        to the upgrade request, within ``open_timeout`` seconds. ``ping_interval`` (seconds):
        a ping that often; a ping unanswered by the next one aborts the connection (the other
        side vanished). ``max_size``: bytes per message received (None: no bound).

        Raises ``OSError`` (refused), ``TimeoutError``, ``websockets.InvalidStatus`` (an answer
        other than 101: ``exc.response`` has its status and body) or another
        ``websockets.InvalidHandshake``."""
        loop = asyncio.get_running_loop()
        ws = cls(uri, on_message, max_size, ping_interval)
        request = ws.protocol.connect()
        for name, value in headers:
            request.headers[name] = value
        ws.protocol.send_request(request)
        host, _, port = ws.address.rpartition(":")
        try:
            async with asyncio.timeout(open_timeout):
                await loop.create_connection(lambda: ws, host, int(port))
                await asyncio.shield(ws._opened)
        except BaseException:
            ws.abort()
            raise
        return ws

    # -- asyncio callbacks ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._write()  # the upgrade request

    def data_received(self, data: bytes) -> None:
        protocol = self.protocol
        protocol.receive_data(data)
        for event in protocol.events_received():
            if isinstance(event, Response):
                self._handshake_done()
                continue
            opcode = event.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY or opcode is Opcode.CONT:
                self._message(opcode, event.data, event.fin)
            elif opcode is Opcode.PONG:
                self._ping_unanswered = False
        self._write()

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self._write()
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._writable.set()
        if not self._opened.done():
            self._opened.set_exception(exc or ConnectionResetError("closed during the handshake"))
            self._opened.exception()  # retrieved: connect() may have given up already
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # -- the caller's side ---------------------------------------------------------------
    @property
    def open(self) -> bool:
        return self.transport is not None and self.protocol.state is State.OPEN

    @property
    def close_rcvd(self) -> Close | None:
        """The other side's close frame (code and reason), if one came."""
        return self.protocol.close_rcvd

    def send(self, message: str | bytes) -> bool:
        """Send one message (``str`` as text, ``bytes`` as binary) at the end of this turn of
        the loop, with the others of the turn in one write; False once the connection closes."""
        if not self.open:
            return False
        if isinstance(message, str):
            self.protocol.send_text(message.encode())
        else:
            self.protocol.send_binary(message)
        if not self._write_owed:
            self._write_owed = True
            self._loop.call_soon(self._write)
        return True

    async def drain(self) -> None:
        """Wait while the transport's write buffer is above its high water mark."""
        await self._writable.wait()

    def pause_reading(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake with ``code`` and ``reason``; the TCP connection is aborted
        if it is not closed :data:`CLOSE_TIMEOUT` seconds later."""
        if self.transport is None or self.protocol.state is not State.OPEN:
            return
        self.protocol.send_close(code, reason)
        self._write()
        self._schedule(CLOSE_TIMEOUT, self.abort)

    def abort(self) -> None:
        """End the TCP connection now."""
        if self.transport is not None:
            self.transport.abort()

    # -- internals -----------------------------------------------------------------------
    def _handshake_done(self) -> None:
        exc = self.protocol.handshake_exc
        if exc is not None:
            if not self._opened.done():
                failure = exc if isinstance(exc, InvalidHandshake) else InvalidHandshake(str(exc))
                self._opened.set_exception(failure)
            return
        if not self._opened.done():
            self._opened.set_result(None)
        if self.ping_interval:
            self._schedule(self.ping_interval, self._ping)

    def _message(self, opcode: Opcode, data: bytes, fin: bool) -> None:
        if opcode is Opcode.CONT or not fin:  # a fragment: most messages are one frame
            self._fragments, whole, data = reassemble(self._fragments, opcode, data, fin)
            if whole is None:
                return
            opcode = whole
        try:
            self.on_message(data.decode() if opcode is Opcode.TEXT else data)
        except Exception:
            log.exception("handling a message from %s failed", self.address)
            self.close(1011, "internal error")

    def _ping(self) -> None:
        if not self.open:
            return
        if self._ping_unanswered:  # the other side vanished (no reset came): let go of it
            log.info("no pong from %s within %.1f s: closing", self.address, self.ping_interval)
            self.abort()
            return
        self._ping_unanswered = True
        self.protocol.send_ping(os.urandom(4))
        self._write()
        assert self.ping_interval is not None
        self._schedule(self.ping_interval, self._ping)

    def _schedule(self, delay: float, callback: Callable[[], None]) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(delay, callback)

    def _write(self) -> None:
        self._write_owed = False
        data = self.protocol.data_to_send()
        transport = self.transport
        if not data or transport is None or transport.is_closing():
            return
        eof = data[-1] == b""  # the library's end of stream: the close handshake is over
        if eof:
            data.pop()
        if data:
            transport.write(b"".join(data))
        if eof:
            transport.close()
