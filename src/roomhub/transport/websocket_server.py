"""uvicorn's WebSocket protocol with one addition: frames sent in a batch leave in one write.

Each ASGI ``websocket.send`` normally costs one ``write`` system call and, at
the other end, one wake-up of the reader. A connection that has several
frames ready at once (the actions face's last data frame and its ``close``
frame, a burst of broadcasts) can say so: when the scope's extensions hold
:data:`BATCH_EXTENSION`, a ``websocket.send`` message carrying
``MORE_KEY: True`` is framed at once but kept in the protocol's output
buffer, and the next send without it (or a close, ping or pong, which write
the buffer out first) writes everything together. The WebSocket frames
themselves are unchanged (RFC 6455); only their grouping into TCP writes
differs. An ASGI server without the extension ignores the key and writes
each frame at once, so the sender works the same on any server.

After the handshake the protocol drops its copies of the handshake's request
and response (headers included), which nothing reads again: an idle
connection then costs about 2 KiB less.

The extension also offers a synchronous write, ``extensions[BATCH_EXTENSION]
[SEND_NOW_KEY](frame) -> bool``: a sender with nothing queued can frame and
write a lone urgent frame in the same step it produced it, instead of waking
a writer task for it; it returns False (nothing written) whenever a plain
``websocket.send`` would have to wait or fail (transport paused, close sent,
client gone), and the sender then goes through ``websocket.send`` as usual.

The extension's ``SOCKET_KEY`` holds the connection's socket (asyncio's
``transport.get_extra_info("socket")``), so that the receive budget can
make its kernel receive buffer small while the client is held back
(:class:`~roomhub.transport.connections.ReceiveWindow`).

A ping the client has not answered while reading is paused (its frames,
its pong perhaps among them, wait for the app) does not close the
connection (1011): the keepalive waits another ``ping_timeout``.

Backpressure is unchanged: a held frame still waits while the transport is
paused. Built on ``uvicorn.protocols.websockets.websockets_sansio_impl``
(uvicorn's default with the ``websockets`` library); :data:`PROTOCOL` is
None when that module is missing, and the hub then uses uvicorn's default.
"""

from __future__ import annotations

from typing import Any

BATCH_EXTENSION = "roomhub.websocket.batch"
"""Scope extension: ``websocket.send`` honours :data:`MORE_KEY`."""
MORE_KEY = "roomhub.more"
"""Message key: more frames follow at once; hold this one until they are sent."""
SEND_NOW_KEY = "send_now"
"""Key of the extension's synchronous write (see the module)."""
SOCKET_KEY = "socket"
"""Key of the extension's socket of the connection (see the module)."""

try:
    from uvicorn.protocols.utils import ClientDisconnected
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from websockets.exceptions import InvalidState
except ImportError:  # pragma: no cover - another uvicorn layout: plain uvicorn it is
    PROTOCOL: type[Any] | None = None
else:

    class BatchingWebSocketProtocol(WebSocketsSansIOProtocol):
        """``WebSocketsSansIOProtocol`` that holds frames marked :data:`MORE_KEY` (see the module)."""

        def handle_connect(self, event: Any) -> None:
            super().handle_connect(event)
            if self.response.status_code == 101:
                self.scope["extensions"][BATCH_EXTENSION] = {  # type: ignore[index]
                    SEND_NOW_KEY: self.send_now, SOCKET_KEY: self.transport.get_extra_info("socket"),
                }

        def send_now(self, frame: str | bytes) -> bool:
            """Frame ``frame`` (text if ``str``) and write it with what is held; False if not possible now.

            False means nothing was written: the handshake is not done, a close was sent, the
            client has gone or the transport is paused (then ``send`` waits as usual).
            """
            if (
                self.disconnected
                or not self.handshake_complete
                or self.close_sent
                or self.initial_response is not None
                or not self.writable.is_set()
            ):
                return False
            try:
                if isinstance(frame, str):
                    self.conn.send_text(frame.encode())
                else:
                    self.conn.send_binary(frame)
            except InvalidState:
                return False
            self.transport.write(b"".join(self.conn.data_to_send()))
            return True

        async def send(self, message: Any) -> None:
            if (
                message.get(MORE_KEY)
                and message["type"] == "websocket.send"
                and self.handshake_complete
                and not self.close_sent
                and self.initial_response is None
            ):
                await self.writable.wait()
                if self.disconnected:
                    raise ClientDisconnected()
                try:
                    text = message.get("text")
                    if text is not None:
                        self.conn.send_text(text.encode())
                    else:
                        self.conn.send_binary(message["bytes"])
                except InvalidState:
                    raise ClientDisconnected() from None
                return  # written by the next send, close, ping or pong (all flush conn's output)
            await super().send(message)
            if message["type"] == "websocket.accept" and self.handshake_complete:
                # The handshake's request and response (headers and all) are not read again:
                # an idle connection need not keep them (the scope keeps the request headers).
                self.request = self.response = None

        def keepalive_timeout(self) -> None:
            # While reading is paused (frames the client sent wait for the app, e.g. a client
            # held back by its receive budget), its pong may be among them: that is no ping left
            # unanswered, and the budget's own close (4029) says why if the client keeps it up.
            if self.read_paused and not self.close_sent and not self.transport.is_closing():
                self.pong_timer = self.loop.call_later(self.ping_timeout, self.keepalive_timeout)
                return
            super().keepalive_timeout()

    PROTOCOL = BatchingWebSocketProtocol
