"""uvicorn's httptools HTTP protocol with one addition: a response's small writes leave together.

An ASGI response is at least two messages, ``http.response.start`` and
``http.response.body``, and uvicorn writes each to the socket at once: two
``write`` system calls per small response and, at the other end, two
wake-ups of the reader. Through the backends proxy a small JSON answer spent
about a quarter of the hub's time in those writes. Here the protocol's
transport is a :class:`CoalescingTransport`: what is written during one step
of the event loop is kept (up to :data:`FLUSH_BYTES`) and handed to the
socket in one ``writelines`` at the end of that step (``loop.call_soon``),
before anything else the loop runs; a close writes it out first. The bytes
on the wire are unchanged (RFC 9112 framing is uvicorn's), only their
grouping into writes differs.

The protocol also serves some HTTP requests without ASGI (:mod:`roomhub.transport.direct_http`):
a request whose path starts with a registered prefix is handed, from the
parser's callbacks, to a :class:`DirectExchange` that writes its response to
the transport itself (no scope dictionary for an app, no task, no
receive/send messages). The protocol's keep-alive, pipelining (a request
that arrives while another's response is being written waits, reading
paused), keep-alive timeout and graceful shutdown treat an exchange like
uvicorn's own ``RequestResponseCycle``. The hub's :class:`~roomhub.transport.security.Door`
(Host, origin and token) is applied first; a refusal is answered from here.

Slow or silent clients (slowloris): uvicorn closes a kept-alive connection
idle between requests after its keep-alive timeout, but waits forever for a
request head that never completes. With :class:`HeadLimits`, a connection
must send a complete request head within ``timeout`` seconds of its opening
(or, on a kept-alive connection, of the next request's first byte); past
it, it is answered 408 (``{"detail"}``) and closed, or just closed if it sent
nothing. At most ``max_pending`` connections may be waiting for their head:
a new one makes the oldest of them close (a flood of silent connections
does not keep out a client that sends its request at once). A WebSocket upgrade's head is a request
head like any other: the callback endpoints' handshakes are covered.

Backpressure is unchanged: the held bytes are at most :data:`FLUSH_BYTES`
and reach the real transport, which pauses the protocol as before, within
the same turn of the loop. A connection upgraded to WebSocket hands the real
transport to uvicorn's WebSocket protocol (for the ASGI WebSockets left: the backends
proxy's), or, when its path belongs to one of the
hub's callback endpoints, to :class:`~roomhub.transport.callback_websocket.CallbackSockets`
(no ASGI cycle; :func:`for_hub` makes the hub's own protocol class).
:data:`PROTOCOL` is None when uvicorn's httptools protocol is missing; the hub
then uses uvicorn's default (and serves no callback endpoint).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from .callback_websocket import CallbackSockets
from .direct_http import DirectExchange, DirectRoute, Refusal

log = logging.getLogger("roomhub.http_server")

FLUSH_BYTES = 64 * 1024
"""Held bytes beyond which a write goes out at once (large bodies gain nothing from waiting)."""


class CoalescingTransport:
    """A stream transport whose writes of one event-loop step leave in one ``writelines``.

    Everything else is the wrapped ``transport``'s (reading, closing, extra info, buffer
    limits); :meth:`get_write_buffer_size` counts the held bytes too."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._held: list[bytes | bytearray | memoryview] = []
        self._held_bytes = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(data)
        self._held_bytes += len(data)
        if self._held_bytes >= FLUSH_BYTES:
            self.flush()

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        """Hand the held bytes to the socket now (one ``writelines``)."""
        if not self._held:
            return
        held, self._held, self._held_bytes = self._held, [], 0
        if not self.transport.is_closing():
            self.transport.writelines(held)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def abort(self) -> None:
        self._held, self._held_bytes = [], 0
        self.transport.abort()

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() + self._held_bytes

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.flush()
        self.transport.set_protocol(protocol)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


@dataclass
class HeadLimits:
    """How long (``timeout``, seconds) a connection may take to send a complete request head, and
    how many connections (``max_pending``) may be waiting for theirs at once; ``pending`` holds
    those, oldest first (one instance per server)."""

    timeout: float
    max_pending: int
    pending: dict[Any, None] = field(default_factory=dict)


try:
    import httptools
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - no httptools: plain uvicorn it is
    PROTOCOL: type[Any] | None = None
else:

    class CoalescingHttpProtocol(HttpToolsProtocol):
        """``HttpToolsProtocol`` writing through a :class:`CoalescingTransport`, serving the
        :class:`DirectRoute` s of ``direct_http_routes`` without ASGI (see the module).

        ``direct_http_routes``, ``direct_door`` and ``callback_sockets`` are set on the subclass
        :func:`for_hub` makes for one hub."""

        direct_http_routes: tuple[DirectRoute, ...] = ()
        direct_door: Any = None  # a roomhub.transport.security.Door, or None to let every request pass
        direct_active: DirectExchange | None = None  # the exchange whose response is being written

        callback_sockets: CallbackSockets | None = None

        head_limits: HeadLimits | None = None  # None: uvicorn's behaviour (no head deadline)
        _head_timer: asyncio.TimerHandle | None = None  # armed while a head is awaited
        _head_begun = False  # a byte of the awaited head has come

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
            limits = self.head_limits
            if limits is None:
                return
            if len(limits.pending) >= limits.max_pending:
                # The oldest gives way, not the newcomer: a flood of connections that send
                # nothing then delays nobody who sends a request at once.
                oldest = next(iter(limits.pending))
                log.debug("%d connections await their request head: closing the oldest", limits.max_pending)
                oldest._head_late(evicted=True)
            self._await_head()

        # -- the request head's deadline (HeadLimits) -----------------------------------------

        def _await_head(self) -> None:
            limits = self.head_limits
            assert limits is not None and self._head_timer is None
            limits.pending[self] = None
            self._head_timer = self.loop.call_later(limits.timeout, self._head_late)

        def _head_received(self) -> None:
            self._head_begun = False
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
                assert self.head_limits is not None
                self.head_limits.pending.pop(self, None)

        def _head_late(self, evicted: bool = False) -> None:
            """The head did not come in time (or ``evicted``: room is needed for a newer
            connection): a 408 if it had begun, and the connection closed."""
            limits = self.head_limits
            assert limits is not None
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            limits.pending.pop(self, None)
            if self.transport.is_closing():
                return
            if not evicted and self.cycle is not None and not self.cycle.response_complete:
                # A pipelined head behind a response still being written: its time starts after.
                self._await_head()
                return
            log.debug("%s: no complete request head within %g s, closing", self.client, limits.timeout)
            if self._head_begun:
                detail = f"the request head did not complete within {limits.timeout:g} s"
                body = json.dumps({"detail": detail})
                self.transport.write(
                    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body.encode())
                )
            self.transport.close()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_begun = True
            if self.head_limits is not None and self._head_timer is None:  # a kept-alive connection's
                self._await_head()  # next request: idle until now, under uvicorn's keep-alive timeout

        # -- HTTP requests served without ASGI (DirectRoute) ----------------------------------

        def on_headers_complete(self) -> None:
            self._head_received()
            if self.direct_http_routes and not self.root_path and not self.parser.should_upgrade():
                url = self.url
                for route in self.direct_http_routes:
                    if url.startswith(route.prefix):
                        self._direct_request(route)
                        return
            super().on_headers_complete()

        def _direct_request(self, route: DirectRoute) -> None:
            parser = self.parser
            scope = self.scope
            http_version = parser.get_http_version()
            scope["method"] = parser.get_method().decode("ascii")
            if http_version != "1.1":
                scope["http_version"] = http_version
            parsed = httptools.parse_url(self.url)
            raw_path = parsed.path
            path = raw_path.decode("ascii")
            scope["path"] = unquote(path) if "%" in path else path
            scope["raw_path"] = raw_path
            scope["query_string"] = parsed.query or b""
            keep_alive = http_version != "1.0" and parser.should_keep_alive()
            refusal = self.direct_door.refusal(scope) if self.direct_door is not None else None
            if refusal is not None:
                exchange: DirectExchange = Refusal(self, scope, keep_alive, *refusal)
            else:
                exchange = route.open(self, scope, keep_alive, self.expect_100_continue)
            existing = self.cycle
            self.cycle = exchange  # type: ignore[assignment]
            if existing is None or existing.response_complete:
                self._start_direct(exchange)
            else:  # pipelined: starts when the response before it is complete
                self.flow.pause_reading()
                self.pipeline.appendleft((exchange, None))  # type: ignore[arg-type]

        def _start_direct(self, exchange: DirectExchange) -> None:
            self.direct_active = exchange
            try:
                exchange.start()
            except Exception:  # a bug, not bad input: this connection only is closed
                log.exception("serving %s %s failed", exchange.scope["method"], exchange.scope["path"])
                exchange.abort()

        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            if isinstance(cycle, DirectExchange):
                self._start_direct(cycle)
            else:
                super()._start_asgi_task(cycle, app)

        def on_body(self, body: bytes) -> None:
            cycle = self.cycle
            if isinstance(cycle, DirectExchange):
                if not cycle.response_complete:
                    cycle.request_body(body)
            else:
                super().on_body(body)

        def on_message_complete(self) -> None:
            cycle = self.cycle
            if isinstance(cycle, DirectExchange):
                if not cycle.response_complete:
                    cycle.request_end()
            else:
                super().on_message_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._head_received()
            active = self.direct_active
            if active is not None:
                self.direct_active = None
                active.disconnected = True
                active.client_gone()
            super().connection_lost(exc)

        def pause_writing(self) -> None:
            super().pause_writing()
            if self.direct_active is not None:
                self.direct_active.client_paused()

        def resume_writing(self) -> None:
            super().resume_writing()
            if self.direct_active is not None:
                self.direct_active.client_resumed()

        def handle_websocket_upgrade(self) -> None:
            coalescing = self.transport
            if isinstance(coalescing, CoalescingTransport):
                coalescing.flush()
                self.transport = coalescing.transport
            sockets = self.callback_sockets
            if sockets is not None:
                path = unquote(httptools.parse_url(self.url).path.decode("latin-1"))
                endpoint = sockets.endpoint_for(path)
                if endpoint is not None:
                    self.connections.discard(self)  # uvicorn no longer owns this connection
                    request = [self.scope["method"].encode(), b" ", self.url, b" HTTP/1.1\r\n"]
                    for name, value in self.scope["headers"]:
                        request += [name, b": ", value, b"\r\n"]
                    request.append(b"\r\n")
                    sockets.upgrade(endpoint, self.transport, b"".join(request))  # type: ignore[arg-type]
                    return
            super().handle_websocket_upgrade()

    PROTOCOL = CoalescingHttpProtocol


def for_hub(sockets: CallbackSockets, routes: list[DirectRoute], door: Any,
            head_limits: HeadLimits | None = None) -> type[Any] | None:
    """The HTTP protocol class of one hub: :data:`PROTOCOL` handing upgrades for ``sockets``'
    endpoints to them and serving ``routes`` without ASGI behind ``door`` (a
    :class:`~roomhub.transport.security.Door`), closing connections whose request head is late by
    ``head_limits`` (see the module); None when :data:`PROTOCOL` is."""
    if PROTOCOL is None:
        return None
    attributes = {"callback_sockets": sockets, "direct_http_routes": tuple(routes), "direct_door": door,
                  "head_limits": head_limits}
    return type("HubHttpProtocol", (PROTOCOL,), attributes)
