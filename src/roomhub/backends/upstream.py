"""The proxy's upstream: a per-instance pool of keep-alive HTTP/1.1 connections (RFC 9112).

Each :class:`UpstreamConnection` is an asyncio protocol on the instance's
Unix socket or loopback port, with ``httptools.HttpResponseParser`` reading
the responses. It carries one exchange at a time (no pipelining upstream):
the exchange (a :class:`ResponseSink`) writes the request head and body
with :meth:`UpstreamConnection.write` and is handed the response as it is
parsed: the head, body pieces as they arrive (de-chunked), the end.

Response framing (``Framing``):

- ``"length"``: ``Content-Length`` given; the body is that many bytes;
- ``"chunked"``: ``Transfer-Encoding: chunked``; pieces arrive de-chunked;
- ``"close"``: neither; the body ends when the backend closes (the
  connection is then not reused);
- ``"none"``: no body (a response to ``HEAD``, 1xx, 204, 304).

Informational (1xx) responses are skipped. A connection goes back to the
pool only after a complete response to a completely sent request, when
both sides keep it alive; anything else closes it. A connection closed by
the backend while idle leaves the pool at once; one that breaks before any
byte of the response came back on a socket that had already served a
response is reported as ``retryable`` (the backend closed an idle
keep-alive connection as the request left).

Flow control both ways: the exchange calls :meth:`UpstreamConnection.pause_reading`
/ :meth:`~UpstreamConnection.resume_reading` when the client reads slower
than the backend writes; the connection calls the sink's
``upstream_paused`` / ``upstream_resumed`` when the backend reads the
request body slower than the client sends it (the transport's write
buffer is above its high-water mark, :data:`WRITE_HIGH_WATER` bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Literal, Protocol

import httptools

log = logging.getLogger("roomhub.backends.upstream")

Framing = Literal["length", "chunked", "close", "none"]
Headers = list[tuple[bytes, bytes]]

CONNECT_TIMEOUT = 10.0
"""Seconds to open a connection to an instance before the request fails (502)."""
MAX_IDLE = 256
"""Idle connections kept per instance; more are closed when their exchange ends."""
WRITE_HIGH_WATER = 256 * 1024
"""Bytes held in a connection's write buffer before the request body's sender is paused."""


class ResponseSink(Protocol):
    """What an :class:`UpstreamConnection` hands a response to (one exchange)."""

    def response_head(self, status: int, reason: bytes, headers: Headers, framing: Framing) -> None:
        """The status line and headers (names as the backend wrote them)."""

    def response_body(self, data: bytes) -> None:
        """A piece of the body, de-chunked (never empty)."""

    def response_end(self) -> None:
        """The response is complete."""

    def upstream_failed(self, exc: BaseException, retryable: bool) -> None:
        """The connection broke or spoke bad HTTP before the response was complete. ``retryable``:
        nothing of a response came back and the socket had served a response before."""

    def upstream_paused(self) -> None:
        """The backend's write buffer is full: stop sending the request body."""

    def upstream_resumed(self) -> None:
        """The backend's write buffer drained: the request body may flow again."""


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection to an instance; see the module doc.

    States: ``idle`` (in the pool or between exchanges), ``head`` (waiting for the response
    head), ``body`` (head handed to the sink, body flowing), ``done`` (response complete)."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.sink: ResponseSink | None = None
        self.served = 0  # complete responses on this socket
        self.closed = False
        self.state: Literal["idle", "head", "body", "done"] = "idle"
        self._head_request = False
        self._request_sent = False
        self._keep_alive = False
        self._headers: Headers = []
        self._reason = b""
        self._framing: Framing = "none"
        self._got_bytes = False

    # -- the exchange's side ------------------------------------------------------------------

    def begin(self, sink: ResponseSink, head_request: bool) -> None:
        """Start an exchange: the response now goes to ``sink``; ``head_request`` for ``HEAD``."""
        self.sink = sink
        self.state = "head"
        self._head_request = head_request
        self._request_sent = False
        self._headers = []
        self._reason = b""
        self._got_bytes = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send request bytes (head or framed body) to the backend."""
        if not self.closed:
            self.transport.write(data)  # type: ignore[union-attr]

    def writelines(self, chunks: list[bytes]) -> None:
        if not self.closed:
            self.transport.writelines(chunks)  # type: ignore[union-attr]

    def request_sent(self) -> None:
        """The whole request has been written; the connection may be reused after the response."""
        self._request_sent = True
        if self.state == "done":
            self._release()

    def pause_reading(self) -> None:
        if not self.closed:
            self.transport.pause_reading()  # type: ignore[union-attr]

    def resume_reading(self) -> None:
        if not self.closed:
            self.transport.resume_reading()  # type: ignore[union-attr]

    def abandon(self) -> None:
        """The exchange gave up (its client left, or its request never completed): close, never reuse."""
        self.sink = None
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport
        self.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        if self.state in ("idle", "done"):  # bytes nobody asked for: the backend broke the protocol
            log.info("%s: %d unexpected bytes after a response", self.pool.label, len(data))
            self.close()
            return
        self._got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc, retryable=False)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if self.state == "body" and self._framing == "close":  # a close-delimited body ends here
            self._complete()
        elif self.state in ("head", "body"):
            self._fail(exc or ConnectionResetError("the backend closed the connection"),
                       retryable=self.state == "head" and not self._got_bytes and self.served > 0)

    def pause_writing(self) -> None:
        if self.sink is not None:
            self.sink.upstream_paused()

    def resume_writing(self) -> None:
        if self.sink is not None:
            self.sink.upstream_resumed()

    # -- httptools callbacks -------------------------------------------------------------------

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        status = parser.get_status_code()
        if status < 200:  # informational: skipped (its on_message_complete follows at once)
            return
        framing: Framing = "close"
        if self._head_request or status in (204, 304):
            framing = "none"
        else:
            for name, value in self._headers:
                lower = name.lower()
                if lower == b"content-length":
                    framing = "length"
                    break
                if lower == b"transfer-encoding" and b"chunked" in value.lower():
                    framing = "chunked"
                    break
        self._framing = framing
        self._keep_alive = parser.should_keep_alive() and framing != "close"
        self.state = "body"
        self.sink.response_head(status, self._reason, self._headers, framing)  # type: ignore[union-attr]
        if self._head_request and self.state == "body":
            # llhttp cannot be told that a HEAD response has no body: the response ends here and
            # the next one is parsed by a fresh parser (this one may still call on_body)
            self.parser = httptools.HttpResponseParser(self)
            self._complete()

    def on_body(self, body: bytes) -> None:
        if self.state == "body":
            self.sink.response_body(body)  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        if self.state == "head":  # the end of an informational response
            self._headers = []
            self._reason = b""
        elif self.state == "body":
            self._keep_alive = self._keep_alive and self.parser.should_keep_alive()
            self._complete()

    # -- internals ------------------------------------------------------------------------------

    def _complete(self) -> None:
        self.state = "done"
        self.served += 1
        sink, self.sink = self.sink, None
        if not self._keep_alive:
            self.close()
        elif self._request_sent:
            self._release()
        # else: request_sent() releases it; an exchange whose request never completes abandons it
        if sink is not None:
            sink.response_end()

    def _release(self) -> None:
        if not self.closed and self.sink is None:
            self.state = "idle"
            if not self.transport.is_reading():  # type: ignore[union-attr]  # paused for a slow client
                self.transport.resume_reading()  # type: ignore[union-attr]
            self.pool.release(self)

    def _fail(self, exc: BaseException, retryable: bool) -> None:
        sink, self.sink = self.sink, None
        self.state = "done"
        self.close()
        if sink is not None:
            sink.upstream_failed(exc, retryable)


class UpstreamPool:
    """Keep-alive connections to one instance: ``socket_path`` (Unix) or ``host:port`` (TCP;
    ``host`` is the loopback address for an instance, another hub's for a forwarded request).

    :meth:`take` gives an idle connection (or None), :meth:`connect` opens a new one,
    :meth:`release` keeps a finished one (up to :data:`MAX_IDLE`), :meth:`close` ends them all.
    There is no limit on connections in use (as many as concurrent requests)."""

    def __init__(self, socket_path: Path | None, port: int | None, label: str = "backend",
                 host: str = "127.0.0.1") -> None:
        self.socket_path = str(socket_path) if socket_path is not None else None
        self.host = host
        self.port = port
        self.label = label
        self.idle: list[UpstreamConnection] = []
        self.closed = False
        self.host_header = b"backend" if socket_path is not None else f"{host}:{port}".encode()

    def take(self) -> UpstreamConnection | None:
        """An idle connection, most recently used first, or None."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    def connect(self, done: Callable[[UpstreamConnection | None, BaseException | None], None],
                ) -> asyncio.Task[None]:
        """Open a connection (at most :data:`CONNECT_TIMEOUT` seconds) and call ``done(conn, None)``,
        or ``done(None, error)`` (``OSError``, ``TimeoutError``); cancelling the task calls nothing."""

        async def opening() -> None:
            loop = asyncio.get_running_loop()
            try:
                if self.closed:
                    raise ConnectionRefusedError(f"{self.label} is stopped")
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    if self.socket_path is not None:
                        _, conn = await loop.create_unix_connection(lambda: UpstreamConnection(self),
                                                                    self.socket_path)
                    else:
                        _, conn = await loop.create_connection(lambda: UpstreamConnection(self),
                                                               self.host, self.port)
            except (OSError, TimeoutError) as exc:
                done(None, exc)
                return
            done(conn, None)

        return asyncio.get_running_loop().create_task(opening(), name=f"connect-{self.label}")

    def release(self, conn: UpstreamConnection) -> None:
        if self.closed or len(self.idle) >= MAX_IDLE:
            conn.close()
        else:
            self.idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        """``conn`` closed: drop it from the idle list."""
        with contextlib.suppress(ValueError):
            self.idle.remove(conn)

    def close(self) -> None:
        """Close the idle connections; those in use close when their exchange ends."""
        self.closed = True
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()
