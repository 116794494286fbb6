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

Backpressure is unchanged: the held bytes are at most :data:`FLUSH_BYTES`
and reach the real transport, which pauses the protocol as before, within
the same turn of the loop. A connection upgraded to WebSocket hands the real
transport to the WebSocket protocol (which batches its own frames, see
:mod:`roomhub.websocket_server`), or, when its path belongs to one of the
hub's callback endpoints, to :class:`~roomhub.callback_websocket.CallbackSockets`
(no ASGI cycle; :func:`for_hub` makes the hub's own protocol class).
:data:`PROTOCOL` is None when uvicorn's httptools protocol is missing; the hub
then uses uvicorn's default (and serves no callback endpoint).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import unquote

from .callback_websocket import CallbackSockets

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


try:
    import httptools
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - no httptools: plain uvicorn it is
    PROTOCOL: type[Any] | None = None
else:

    class CoalescingHttpProtocol(HttpToolsProtocol):
        """``HttpToolsProtocol`` writing through a :class:`CoalescingTransport` (see the module)."""

        callback_sockets: CallbackSockets | None = None  # set on the class :func:`for_hub` makes

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]

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


def for_hub(sockets: CallbackSockets) -> type[Any] | None:
    """The HTTP protocol class of one hub: :data:`PROTOCOL` handing upgrades for ``sockets``'
    endpoints to them (None when :data:`PROTOCOL` is)."""
    if PROTOCOL is None:
        return None
    return type("HubHttpProtocol", (PROTOCOL,), {"callback_sockets": sockets})
