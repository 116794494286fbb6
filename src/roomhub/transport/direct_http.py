"""HTTP requests served by the hub's HTTP protocol without ASGI: the exchange interface.

A :class:`DirectRoute` names a path prefix and how to open a :class:`DirectExchange`
for a request under it; :mod:`roomhub.transport.http_server`'s protocol calls the exchange
from its parser callbacks and the exchange writes its response to the transport
itself (no scope dictionary for an app, no task, no receive/send messages).
:class:`Refusal` is the door's answer (400/421/403/401 as ``{"detail": message}``).
Used by the backends proxy (:mod:`roomhub.backends.exchange`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any


class _NoEvent:
    """Stands for ``RequestResponseCycle.message_event``, which uvicorn's protocol sets on loss."""

    @staticmethod
    def set() -> None:
        return None


class DirectExchange:
    """One request served by the protocol without ASGI; subclasses implement the hooks.

    The protocol calls, in order: :meth:`start` (when earlier responses on the connection are
    complete), :meth:`request_body` for each piece of the body (de-chunked, possibly before
    ``start`` for a pipelined request), :meth:`request_end`; at any time :meth:`client_gone`
    (the connection was lost), :meth:`client_paused` / :meth:`client_resumed` (the transport's
    write buffer crossed its high/low-water marks). The exchange writes its response with
    :meth:`write` and ends it with :meth:`complete` (or :meth:`abort` for a broken one).

    ``scope``: the ASGI-style view of the request (``type``, ``method``, ``path``, ``raw_path``,
    ``query_string``, ``headers`` as lower-case byte pairs, ``client``, ``server``, ``scheme``,
    ``http_version``). Attributes ``response_complete``, ``keep_alive`` and ``disconnected``
    are those uvicorn's protocol reads on its cycles.
    """

    message_event = _NoEvent()

    def __init__(self, protocol: Any, scope: dict[str, Any], keep_alive: bool,
                 expect_100_continue: bool) -> None:
        self.protocol = protocol
        self.transport: asyncio.Transport = protocol.transport
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_100_continue = expect_100_continue
        self.response_complete = False
        self.disconnected = False

    # -- hooks ----------------------------------------------------------------------------

    def start(self) -> None:
        """Begin answering (the response before it on the connection is complete)."""
        raise NotImplementedError

    def request_body(self, data: bytes) -> None:
        """A piece of the request body (ignored by default)."""

    def request_end(self) -> None:
        """The request body is complete."""

    def client_gone(self) -> None:
        """The client's connection was lost before the response was complete."""

    def client_paused(self) -> None:
        """The client reads slower than the response is written: stop producing."""

    def client_resumed(self) -> None:
        """The client's write buffer drained."""

    # -- what subclasses use ------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.transport.write(data)

    def pause_request_body(self) -> None:
        """Stop reading from the client (the request body has nowhere to go yet)."""
        self.protocol.flow.pause_reading()

    def resume_request_body(self) -> None:
        self.protocol.flow.resume_reading()

    def send_100_continue(self) -> None:
        """Answer ``Expect: 100-continue`` (once) before reading the body."""
        if self.expect_100_continue and not self.transport.is_closing():
            self.expect_100_continue = False
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def complete(self) -> None:
        """The response is fully written: keep the connection alive (or close it) and let the
        protocol go on with the next request."""
        if self.response_complete:
            return
        self.response_complete = True
        protocol = self.protocol
        if protocol.direct_active is self:
            protocol.direct_active = None
        if not self.keep_alive:
            self.transport.close()
        protocol.on_response_complete()

    def abort(self) -> None:
        """The response cannot be completed: close the connection (the client sees it cut)."""
        self.keep_alive = False
        self.response_complete = True
        if self.protocol.direct_active is self:
            self.protocol.direct_active = None
        self.transport.close()

    def send_json(self, status: int, body: dict[str, Any],
                  headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        """A whole JSON response (``status``, ``body``) and :meth:`complete`."""
        data = json.dumps(body).encode()
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, _reason(status)),
                 b"content-type: application/json\r\ncontent-length: %d\r\n" % len(data)]
        lines += [name + b": " + value + b"\r\n" for name, value in headers]
        if not self.keep_alive:
            lines.append(b"connection: close\r\n")
        lines += [b"\r\n", data]
        self.transport.writelines(lines)
        self.complete()


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


class Refusal(DirectExchange):
    """The door's answer as ``{"detail": message}``: 400 or 421 (Host), 403 (origin), 401 (token, with
    ``WWW-Authenticate: Bearer``); see :meth:`roomhub.transport.security.Door.refusal`."""

    def __init__(self, protocol: Any, scope: dict[str, Any], keep_alive: bool, status: int,
                 message: str) -> None:
        super().__init__(protocol, scope, keep_alive, False)
        self.status, self.message = status, message

    def start(self) -> None:
        extra = ((b"www-authenticate", b"Bearer"),) if self.status == 401 else ()
        self.send_json(self.status, {"detail": self.message}, extra)


OpenExchange = Callable[[Any, dict[str, Any], bool, bool], DirectExchange]
"""``open(protocol, scope, keep_alive, expect_100_continue)`` -> the request's exchange."""


@dataclass(frozen=True)
class DirectRoute:
    """HTTP requests whose raw path starts with ``prefix`` (bytes, e.g. ``b"/backends/"``) are
    served by the exchanges ``open`` makes, without ASGI. WebSocket upgrades are not."""

    prefix: bytes
    open: OpenExchange
