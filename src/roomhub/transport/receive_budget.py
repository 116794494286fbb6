"""What a client may send: a per-connection token bucket, shared with its room's.

Every connection has a :class:`ReceiveBudget` (a token bucket over the
messages it sends) and is handled :data:`TURN_MESSAGES` messages per turn of
the event loop, so one client sending as fast as it can gets its share of the
hub and no more: over its budget it is simply read no faster (the connection
stops reading it, TCP flow control slows it down, see
:mod:`roomhub.transport.callback_websocket`), and a client held back for
``limits.receive_throttled_close`` seconds without a break is closed with
:attr:`~roomhub.core.errors.CloseCode.RATE_LIMITED`. The members of a room draw
from the room's bucket too (:meth:`ReceiveBudget.join`), so a room together gets
its share and no more.
"""

from __future__ import annotations

import socket

from ..core.config import LimitsConfig

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
    Held back means by its budget, or ``parked``: the connection's task has not read what it
    was given (its inbox is full), so reading is paused too; :class:`ReceiveBudget` gives the
    size back once neither holds.

    ``sock`` is what asyncio's ``transport.get_extra_info("socket")`` gives (None: nothing to do,
    e.g. not a TCP socket). Errors of ``setsockopt`` are ignored: the buffer is an optimisation.
    """

    __slots__ = ("parked", "saved", "sock")

    def __init__(self, sock: socket.socket | None) -> None:
        self.sock = sock
        self.saved: int | None = None  # the size before hold(), while held
        self.parked = False  # set by the connection while its task's inbox is full

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
    its bucket is half full again; :meth:`overdue` gives the reason to close it once that lasted
    ``close_after`` seconds (0: never).

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
            window = self.window
            if window is not None and window.saved is not None and not window.parked:
                window.release()
            return 0.0
        own_ok = not own or self._refill(now) >= 1.0
        shared_ok = not shared or room._refill(now) >= 1.0  # type: ignore[union-attr]
        if own_ok and shared_ok:
            if own:
                self._spend()
            if shared:
                room._spend()  # type: ignore[union-attr]
            window = self.window
            if (window is not None and window.saved is not None and not window.parked
                    and self.held_since is None and (room is None or room.held_since is None)):
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
