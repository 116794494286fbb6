"""What one face's WebSocket connections carried: plain integer counters the transport bumps per
frame (a few attribute additions, no lock, no metrics library call), read at scrape time by
:mod:`roomhub.core.metrics`. The hub gives each face its :class:`Traffic`; a connection built
without one counts into :data:`UNCOUNTED`, which nothing reads."""

from __future__ import annotations

Frame = str | bytes
"""One WebSocket message: text as ``str``, binary as ``bytes``."""


class Traffic:
    """Counters of one face's connections, all monotonic but :attr:`open`.

    ``messages_received``/``messages_sent``: WebSocket messages; ``bytes_received``/``bytes_sent``:
    their payload bytes (UTF-8 for text); ``opened``/``closed``: connections; ``closes``: closes the
    hub decided, by close code (a slow consumer's 4008, a limit's 1013, 4029...).
    """

    __slots__ = ("bytes_received", "bytes_sent", "closed", "closes", "face", "messages_received",
                 "messages_sent", "opened")

    def __init__(self, face: str = "") -> None:
        self.face = face
        self.messages_received = 0
        self.bytes_received = 0
        self.messages_sent = 0
        self.bytes_sent = 0
        self.opened = 0
        self.closed = 0
        self.closes: dict[int, int] = {}

    @property
    def open(self) -> int:
        """Connections open now."""
        return self.opened - self.closed

    def sent(self, size: int) -> None:
        """Count one message sent, of ``size`` payload bytes (its UTF-8 bytes for text, which the
        connection has in hand: counting never encodes)."""
        self.messages_sent += 1
        self.bytes_sent += size

    def received(self, size: int) -> None:
        """Count one message received, of ``size`` payload bytes (as :meth:`sent`)."""
        self.messages_received += 1
        self.bytes_received += size

    def closing(self, code: int) -> None:
        """Count a close the hub decided, with its close code."""
        self.closes[code] = self.closes.get(code, 0) + 1


UNCOUNTED = Traffic()
"""Where connections built without a face's :class:`Traffic` count (tests, a mounted ASGI app)."""
