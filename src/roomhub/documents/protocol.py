"""The y-websocket wire protocol, sans I/O: decode client frames, encode server frames.

Follows the framing of the ``y-websocket`` npm client and ``y-protocols``
(``sync``, ``awareness``, ``auth``), which pycrdt's providers speak too. One
binary WebSocket frame holds one message; integers are unsigned LEB128
varints, byte strings and strings are a varint length then the bytes.

- ``[0, 0, sv]`` sync step 1 (a state vector), ``[0, 1, update]`` sync step 2,
  ``[0, 2, update]`` an incremental update;
- ``[1, payload]`` awareness: ``payload`` = count, then per entry the client
  id, its clock and its state as a JSON string (``null``: removed);
- ``[2, 0, reason]`` auth: permission denied (server to client);
- ``[3]`` query awareness (answered with every known awareness state).

:class:`Join` is a connection's way into its room, also sans I/O: frames a
client sends while its room is being loaded are kept, in order, and handed
over once it joined.

Encoding uses pycrdt's encoders (:func:`pycrdt.write_var_uint`,
:class:`pycrdt.Encoder`); decoding is strict: a truncated field, a varint
longer than 64 bits, trailing bytes, an unknown type or awareness state that
is not JSON raises :class:`ProtocolError`, whose ``code`` (1007, invalid
payload) is the WebSocket close code to use.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pycrdt import Encoder, write_var_uint

from .. import jsonlimits
from ..core import errors

MSG_SYNC = 0
MSG_AWARENESS = 1
MSG_AUTH = 2
MSG_QUERY_AWARENESS = 3

SYNC_STEP1 = 0
SYNC_STEP2 = 1
SYNC_UPDATE = 2

AUTH_PERMISSION_DENIED = 0

INVALID_PAYLOAD = errors.CloseCode.INVALID_PAYLOAD  # data inconsistent with the message type
EMPTY_UPDATE = b"\x00\x00"  # an update with no structs and an empty delete set
EMPTY_STATE_VECTOR = b"\x00"  # the state vector of a client that has nothing

_MAX_VARINT_BYTES = 10
MAX_EARLY_FRAMES = 256
"""Frames a client may send before its room is ready (loaded, access decided)."""


class ProtocolError(errors.ProtocolError):
    """A frame that does not follow the protocol; close the connection with ``code`` (a close
    code) and ``reason`` (the same text as ``message``)."""

    def __init__(self, reason: str, code: int = INVALID_PAYLOAD) -> None:
        super().__init__(code, reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SyncStep1:
    state_vector: bytes


@dataclass(frozen=True, slots=True)
class SyncStep2:
    update: bytes


@dataclass(frozen=True, slots=True)
class SyncUpdate:
    update: bytes


@dataclass(frozen=True, slots=True)
class AwarenessEntry:
    client_id: int
    clock: int
    state: str  # the JSON text as sent; "null" means the state was removed

    @property
    def removed(self) -> bool:
        return self.state == "null"


@dataclass(frozen=True, slots=True)
class AwarenessUpdate:
    entries: tuple[AwarenessEntry, ...]
    frame: bytes  # the whole frame as received (relayed as is)


@dataclass(frozen=True, slots=True)
class QueryAwareness:
    pass


@dataclass(frozen=True, slots=True)
class Auth:
    subtype: int
    reason: str


Message = SyncStep1 | SyncStep2 | SyncUpdate | AwarenessUpdate | QueryAwareness | Auth


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def varuint(self) -> int:
        data, pos, value, shift = self.data, self.pos, 0, 0
        for _ in range(_MAX_VARINT_BYTES):
            if pos >= len(data):
                raise ProtocolError("truncated varint")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                self.pos = pos
                return value
            shift += 7
        raise ProtocolError("varint longer than 64 bits")

    def bytes_(self) -> bytes:
        length = self.varuint()
        end = self.pos + length
        if end > len(self.data):
            raise ProtocolError(f"byte string of {length} bytes runs past the frame's end")
        value = self.data[self.pos:end]
        self.pos = end
        return value

    def string(self) -> str:
        try:
            return self.bytes_().decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("string is not valid UTF-8") from None

    def end(self) -> None:
        if self.pos != len(self.data):
            raise ProtocolError(f"{len(self.data) - self.pos} unexpected bytes after the message")


def decode(frame: bytes, max_json_depth: int = jsonlimits.DEFAULT_MAX_DEPTH) -> Message:
    """Decode one client frame. Raises :class:`ProtocolError` on anything malformed.

    An awareness state nested deeper than ``max_json_depth`` levels is not JSON here.
    """
    r = _Reader(frame)
    kind = r.varuint()
    message: Message
    if kind == MSG_SYNC:
        sub = r.varuint()
        payload = r.bytes_()
        if sub == SYNC_STEP1:
            message = SyncStep1(payload)
        elif sub == SYNC_STEP2:
            message = SyncStep2(payload)
        elif sub == SYNC_UPDATE:
            message = SyncUpdate(payload)
        else:
            raise ProtocolError(f"unknown sync message type {sub}")
    elif kind == MSG_AWARENESS:
        message = AwarenessUpdate(decode_awareness(r.bytes_(), max_json_depth), frame)
    elif kind == MSG_QUERY_AWARENESS:
        message = QueryAwareness()
    elif kind == MSG_AUTH:
        sub = r.varuint()
        message = Auth(sub, r.string() if r.pos < len(frame) else "")
    else:
        raise ProtocolError(f"unknown message type {kind}")
    r.end()
    return message


def decode_awareness(
    payload: bytes, max_json_depth: int = jsonlimits.DEFAULT_MAX_DEPTH
) -> tuple[AwarenessEntry, ...]:
    """Decode an awareness update's payload (count, then client id, clock, JSON state).

    Raises :class:`ProtocolError` (1007) for a state that is not JSON or is nested deeper
    than ``max_json_depth`` levels.
    """
    r = _Reader(payload)
    count = r.varuint()
    if count > len(payload):  # each entry takes at least 3 bytes: refuse absurd counts early
        raise ProtocolError(f"awareness update claims {count} entries")
    entries = []
    for _ in range(count):
        client_id = r.varuint()
        clock = r.varuint()
        state = r.string()
        try:
            jsonlimits.loads(state, max_json_depth)
        except ValueError as exc:
            raise ProtocolError(f"awareness state of client {client_id} is not JSON: {exc}") from None
        entries.append(AwarenessEntry(client_id, clock, state))
    r.end()
    return tuple(entries)


def _write_string(enc: Encoder, text: str) -> None:
    # pycrdt's Encoder.write_var_string writes the length in characters; the protocol wants bytes.
    data = text.encode("utf-8")
    enc.write_var_uint(len(data))
    enc.stream.append(data)


def _sync(sub: int, payload: bytes) -> bytes:
    return bytes((MSG_SYNC, sub)) + write_var_uint(len(payload)) + payload


def sync_step2_header(size: int) -> bytes:
    """The bytes before a sync step 2 payload of ``size`` bytes (type, sub-type, length): a
    large payload is framed after them without being copied into a frame of its own."""
    return bytes((MSG_SYNC, SYNC_STEP2)) + write_var_uint(size)


def sync_header_size(frame: bytes) -> int:
    """Bytes before the payload of a sync frame (type, sub-type, payload length)."""
    r = _Reader(frame)
    r.varuint()
    r.varuint()
    r.varuint()
    return r.pos


def sync_step1(state_vector: bytes) -> bytes:
    """``[0, 0, state_vector]``: ask the peer for what we miss."""
    return _sync(SYNC_STEP1, state_vector)


def sync_step2(update: bytes) -> bytes:
    """``[0, 1, update]``: the answer to a peer's sync step 1."""
    return _sync(SYNC_STEP2, update)


def sync_update(update: bytes) -> bytes:
    """``[0, 2, update]``: an incremental document update."""
    return _sync(SYNC_UPDATE, update)


def encode_awareness(entries: list[tuple[int, int, str]]) -> bytes:
    """An awareness frame for ``(client_id, clock, json_state)`` entries (``"null"``: removed)."""
    enc = Encoder()
    enc.write_var_uint(len(entries))
    for client_id, clock, state in entries:
        enc.write_var_uint(client_id)
        enc.write_var_uint(clock)
        _write_string(enc, state)
    payload = enc.to_bytes()
    return bytes((MSG_AWARENESS,)) + write_var_uint(len(payload)) + payload


def permission_denied(reason: str) -> bytes:
    """``[2, 0, reason]``: y-protocols' auth message telling the client it may not write."""
    enc = Encoder()
    enc.write_var_uint(MSG_AUTH)
    enc.write_var_uint(AUTH_PERMISSION_DENIED)
    _write_string(enc, reason)
    return enc.to_bytes()


# An awareness update with no entry: changes nothing, proves the connection alive.
KEEPALIVE = encode_awareness([])


class JoinPhase(enum.Enum):
    """Where a ``/yjs`` connection stands (see :class:`Join`)."""

    JOINING = "joining"  # the room is being loaded and access decided
    JOINED = "joined"  # frames go to the room
    LEFT = "left"  # refused, or the connection ended: frames are dropped


class Join:
    """The join states of one ``/yjs`` connection, sans I/O: JOINING, then JOINED or LEFT.

    While JOINING, :meth:`receive` keeps what the client sends (up to
    :data:`MAX_EARLY_FRAMES` frames), and :meth:`joined` hands it back, in
    order, when the room is ready; once JOINED, :meth:`receive` says to handle
    each frame at once. A text frame raises :class:`ProtocolError` with 1003
    (the protocol is binary), one frame past the bound while joining with 1008.
    Nothing is allocated for kept frames until there is one: most clients
    send their sync step 1 after their room is ready.
    """

    __slots__ = ("_early", "phase", "writable")

    def __init__(self) -> None:
        self.phase = JoinPhase.JOINING
        self.writable = False  # known once JOINED (read-only access: False)
        self._early: list[bytes] | None = None

    def receive(self, message: bytes | str) -> bool:
        """A frame arrived: True to handle it now (JOINED), False if it was kept or dropped."""
        phase = self.phase
        if phase is JoinPhase.LEFT:
            return False
        if isinstance(message, str):
            raise ProtocolError("binary frames only (y-websocket protocol)",
                                code=errors.CloseCode.UNSUPPORTED_DATA)
        if phase is JoinPhase.JOINED:
            return True
        early = self._early
        if early is None:
            early = self._early = []
        elif len(early) >= MAX_EARLY_FRAMES:
            raise ProtocolError("too many frames before the document was ready",
                                code=errors.CloseCode.POLICY_VIOLATION)
        early.append(message)
        return False

    def joined(self, writable: bool) -> list[bytes]:
        """The room is ready: JOINING -> JOINED. Returns the frames kept meanwhile, oldest first,
        to handle now. Raises ``RuntimeError`` unless JOINING."""
        if self.phase is not JoinPhase.JOINING:
            raise RuntimeError(f"joined() while {self.phase.value}")
        self.phase = JoinPhase.JOINED
        self.writable = writable
        early, self._early = self._early, None
        return early or []

    def leave(self) -> bool:
        """Refused, or the connection ended: -> LEFT. True if it was JOINED (its room must
        forget it)."""
        was_joined = self.phase is JoinPhase.JOINED
        self.phase = JoinPhase.LEFT
        self._early = None
        return was_joined
