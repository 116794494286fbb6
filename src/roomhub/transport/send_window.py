"""The one backpressure rule of every WebSocket connection: a byte-counted send window.

A connection's :meth:`send` never waits. What it cannot write at once is
buffered for the client, and the :class:`SendWindow` counts those bytes
(``limits.send_*_bytes``):

- above the **high water mark** the window is *paused*: producers that can
  wait (a program's output pump, :meth:`roomhub.core.rooms.Room.wait_writable`)
  stop taking more until it is *drained* again;
- at or below the **low water mark** it is drained (resumed);
- past the **hard bound** the client is a slow consumer: the connection is
  closed with :attr:`~roomhub.core.errors.CloseCode.SLOW_CONSUMER` (4008) and a
  reason, and what was buffered for it is dropped. The room keeps its pace.

Every face's socket is a
:class:`~roomhub.transport.callback_websocket.CallbackWebSocket`: its window
counts the bytes framed and not yet accepted by the kernel (the transport's
write-buffer limits are set to the same marks).
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class SendLimits(Protocol):
    """What :meth:`SendWindow.from_limits` reads (``server.limits``; bytes)."""

    send_buffer_bytes: int
    send_high_water_bytes: int
    send_low_water_bytes: int


SLOW_CONSUMER_REASON = "send buffer overflow: client too slow"
"""The close reason sent with 4008 (one reason for every face)."""


class SendWindow:
    """Bytes buffered for one client against a low and high water mark and a hard bound.

    ``low < high <= bound`` (bytes). :attr:`buffered` is what the connection
    reports (:meth:`add`, :meth:`remove`, :meth:`set`); each returns False
    once ``buffered`` passes ``bound`` (the connection then closes with 4008).
    :attr:`is_drained` is False from the moment ``buffered`` reaches ``high``
    until it falls to ``low``; :attr:`drained` is an event that follows it,
    made on first use so that an idle connection holds none.
    """

    __slots__ = ("_event", "bound", "buffered", "high", "is_drained", "low", "transport_paused")

    def __init__(self, bound: int, high: int, low: int) -> None:
        if not 0 <= low < high <= bound:
            raise ValueError(f"send window needs low < high <= bound, got {low}, {high}, {bound}")
        self.bound = bound
        self.high = high
        self.low = low
        self.buffered = 0
        self.is_drained = True
        # The transport's own pause (asyncio's pause_writing/resume_writing, same marks).
        self.transport_paused = False
        self._event: asyncio.Event | None = None

    @classmethod
    def from_limits(cls, limits: SendLimits) -> SendWindow:
        """The window ``limits`` (``server.limits``) gives each connection."""
        return cls(limits.send_buffer_bytes, limits.send_high_water_bytes, limits.send_low_water_bytes)

    @property
    def drained(self) -> asyncio.Event:
        """An event set while :attr:`is_drained` holds."""
        event = self._event
        if event is None:
            event = self._event = asyncio.Event()
            if self.is_drained:
                event.set()
        return event

    def add(self, size: int) -> bool:
        """``size`` more bytes are buffered; False if that passes the bound (slow consumer).

        A client owed nothing takes any one message, however large (``limits.max_frame_bytes``
        bounds what a face sends, not the window): only bytes that pile up count against the
        bound."""
        buffered = self.buffered
        return self.set(buffered + size) or not buffered

    def remove(self, size: int) -> None:
        """``size`` bytes left (written to the kernel, or dropped)."""
        self.set(max(0, self.buffered - size))

    def set(self, buffered: int) -> bool:
        """``buffered`` bytes are held now; False if that passes the bound (slow consumer)."""
        self.buffered = buffered
        if self.is_drained:
            if buffered >= self.high:
                self._drained_is(False)
        elif buffered <= self.low:
            self._drained_is(True)
        return buffered <= self.bound

    def written(self, buffered: int) -> bool:
        """What the kernel did not take of a write: ``buffered`` bytes; False past the bound.

        Bytes counted by :meth:`add` during a turn may have paused the window where the
        transport, once written, is not paused (it holds no more than ``high``): such a
        transport never calls ``resume_writing``, so nothing would drain the window but the
        next write. It is drained now unless the transport is paused."""
        within = self.set(buffered)
        if not self.is_drained and not self.transport_paused:
            self._drained_is(True)
        return within

    def pause_transport(self) -> None:
        """The transport paused writing (asyncio's ``pause_writing``: more than ``high`` held)."""
        self.transport_paused = True

    def resume_transport(self, buffered: int) -> None:
        """The transport resumed writing (``resume_writing``): ``buffered`` bytes are held."""
        self.transport_paused = False
        self.set(buffered)

    def release(self) -> None:
        """Nothing is owed any more (the connection is closing): drained, so nobody waits on it."""
        self.buffered = 0
        if not self.is_drained:
            self._drained_is(True)

    def _drained_is(self, value: bool) -> None:
        self.is_drained = value
        event = self._event
        if event is not None:
            event.set() if value else event.clear()


class SendWindowed:
    """Gives a connection with a ``window`` (:class:`SendWindow`) the members producers use."""

    __slots__ = ()
    window: SendWindow

    @property
    def is_drained(self) -> bool:
        """False from the send window's high water mark until its low one (True when closing)."""
        return self.window.is_drained

    @property
    def drained(self) -> asyncio.Event:
        """An event set while :attr:`is_drained` holds (made on first use: idle connections have none)."""
        return self.window.drained
