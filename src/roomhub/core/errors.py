"""The hub's errors: one set of WebSocket close codes and one root of every protocol error.

- :class:`CloseCode`: every close code the hub sends (RFC 6455 section 7.4.1 for
  1000-1015, the 4000-4999 private range for the hub's own).
- :class:`ProtocolError`: a client's frame that cannot be used. It carries either
  a close code (the connection is closed with it: documents) or an error code (an
  error frame is sent and the connection stays open: pages, actions, widgets),
  and a message. Each face's protocol subclasses it, keeping its own constructor.
- :class:`HubError`: the hub cannot start as configured.
- :class:`RoomError`: a join refused, with the close code and reason to close with.
"""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    """WebSocket close codes used by every face (RFC 6455 section 7.4, plus 4xxx of our own)."""

    NORMAL = 1000
    GOING_AWAY = 1001  # the hub is shutting down
    PROTOCOL_ERROR = 1002  # a malformed WebSocket frame (the websockets library's code)
    UNSUPPORTED_DATA = 1003  # e.g. a binary frame on a JSON protocol
    INVALID_PAYLOAD = 1007  # data inconsistent with the message type (text not UTF-8, bad Yjs update)
    POLICY_VIOLATION = 1008  # read-only client writing, flood of calls, ...
    MESSAGE_TOO_BIG = 1009  # a frame over limits.max_frame_bytes
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012  # a backend restarts; in a cluster, the room's hub changed: reconnect
    TRY_AGAIN_LATER = 1013  # a room, client or connection limit is reached
    UNAUTHORIZED = 4001  # token missing or invalid after the handshake
    FORBIDDEN = 4003  # access denied to this room
    NOT_FOUND = 4004  # no such room, session or resource
    SLOW_CONSUMER = 4008  # the client did not read fast enough: its send queue overflowed
    SESSION_TAKEN = 4009  # an actions session was resumed by another connection
    ROOM_FAILED = 4011  # the room could not be created (e.g. a prologue failed)
    RATE_LIMITED = 4029  # the client sent over limits.receive_rate for too long (as HTTP 429)


class ProtocolError(Exception):
    """A client frame that cannot be used: the root of every face's protocol error.

    ``code`` is a :class:`CloseCode` (an ``int``: close the connection with it) or a
    face's error code (a ``str`` or ``int`` sent in an error frame); ``message`` says
    what is wrong, in words a client's author can act on.
    """

    def __init__(self, code: int | str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class HubError(Exception):
    """The hub cannot start as configured; the message says why and what to change."""


class RoomError(Exception):
    """A join refused; ``code`` is the WebSocket close code, ``reason`` says why."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
