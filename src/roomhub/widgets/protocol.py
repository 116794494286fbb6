"""The widgets protocol, sans I/O: encode server messages, decode browser frames.

Message shapes follow pgwidgets (pgwidgets-js ``RemoteInterface`` and the
pgwidgets-python driver), so the pgwidgets JavaScript library can drive this
server and our renderer speaks the same JSON:

Server -> browser (JSON text frames; a JSON array of them is also allowed and
answered with an array of results):

- ``{"type": "init", "id": 0}``
- ``{"type": "session-info", "session_id": S, "token": T}`` (no id, no reply)
- ``{"type": "create", "id": N, "wid": W, "class": C, "args": [...]}``
- ``{"type": "call", "id": N, "wid": W, "method": M, "args": [...], "silent"?: true}``
- ``{"type": "batch", "id": N, "calls": [{"wid", "method", "args"}, ...]}``
- ``{"type": "listen" | "unlisten", "id": N, "wid": W, "action": A}``
- ``{"type": "reconstruct-start", "id": N, "next_wid": W}``,
  ``{"type": "reconstruct-end", "id": N}``

Browser -> server:

- ``{"type": "result", "id": N, "value"?, "wid"?, "next_wid"?, "session_id"?, "token"?}``
- ``{"type": "error", "id": N, "error": "message"}``
- ``{"type": "callback", "wid": W, "action": A, "args": [...]}``
- ``{"type": "viewport", "width": px, "height": px}``
- ``{"type": "binary-chunk", "wid", "transfer_id", "file_index", "file_count",
  "chunk_index", "num_chunks", "encoding": "binary"}`` followed by one binary
  frame (headers and frames pair in FIFO order).

Widget references travel both ways as ``{"__wid__": N}`` (the browser may add
``"__class__"``). Decoding raises :class:`ProtocolError` with one of the codes
below; nothing here does I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import orjson

from .. import jsonlimits
from ..core import errors

# ProtocolError codes
BAD_JSON = "bad-json"
BAD_MESSAGE = "bad-message"
UNKNOWN_TYPE = "unknown-type"
UNEXPECTED_BINARY = "unexpected-binary"

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
# Values the standard encoder treats its own way (or refuses) raise TypeError in orjson with these.
_ORJSON_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


class ProtocolError(errors.ProtocolError):
    """A browser frame that cannot be used; ``code`` is one of this module's codes, sent in
    an error frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)


def encode(message: dict[str, Any] | list[dict[str, Any]]) -> str:
    """One JSON text frame (compact); encode once, send the same text to every browser.

    orjson does the work; where its rules differ from the standard encoder's (it writes NaN
    and infinities as ``null``, refuses non-string keys, integers past 64 bits, lone
    surrogates and subclasses of the basic types), any output with a ``null`` and any
    ``TypeError`` go through the standard encoder, which gives the text it always gave or
    raises ``TypeError``/``ValueError`` as before.
    """
    try:
        out = orjson.dumps(message, option=_ORJSON_OPTIONS)
    except TypeError:
        return _dumps(message)
    if b"null" in out:
        return _dumps(message)
    return out.decode()


# -- server -> browser ------------------------------------------------------


def init() -> dict[str, Any]:
    return {"type": "init", "id": 0}


def session_info(session_id: str, token: str) -> dict[str, Any]:
    return {"type": "session-info", "session_id": session_id, "token": token}


def create(msg_id: int, wid: int, cls: str, args: list[Any]) -> dict[str, Any]:
    return {"type": "create", "id": msg_id, "wid": wid, "class": cls, "args": args}


def call(
    msg_id: int, wid: int, method: str, args: list[Any], silent: bool = False
) -> dict[str, Any]:
    msg = {"type": "call", "id": msg_id, "wid": wid, "method": method, "args": args}
    if silent:
        msg["silent"] = True
    return msg


def batch(msg_id: int, calls: list[dict[str, Any]]) -> dict[str, Any]:
    """``calls`` items are ``{"wid": W, "method": M, "args": [...]}``."""
    return {"type": "batch", "id": msg_id, "calls": calls}


def listen(msg_id: int, wid: int, action: str) -> dict[str, Any]:
    return {"type": "listen", "id": msg_id, "wid": wid, "action": action}


def unlisten(msg_id: int, wid: int, action: str) -> dict[str, Any]:
    return {"type": "unlisten", "id": msg_id, "wid": wid, "action": action}


def reconstruct_start(msg_id: int, next_wid: int) -> dict[str, Any]:
    return {"type": "reconstruct-start", "id": msg_id, "next_wid": next_wid}


def reconstruct_end(msg_id: int) -> dict[str, Any]:
    return {"type": "reconstruct-end", "id": msg_id}


# -- browser -> server ------------------------------------------------------


@dataclass(frozen=True)
class Result:
    id: int
    value: Any = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Error:
    id: int | None
    error: str


@dataclass(frozen=True)
class Callback:
    wid: int
    action: str
    args: list[Any]


@dataclass(frozen=True)
class Viewport:
    width: int
    height: int


@dataclass(frozen=True)
class ChunkHeader:
    """Announces the binary frame that follows: chunk ``chunk_index`` of file ``file_index``."""

    wid: int
    transfer_id: int
    file_index: int
    file_count: int
    chunk_index: int
    num_chunks: int


BrowserMessage = Result | Error | Callback | Viewport | ChunkHeader


def read_credentials(
    frame: str | bytes, max_json_depth: int = jsonlimits.DEFAULT_MAX_DEPTH
) -> tuple[str | None, str | None]:
    """The ``(session_id, token)`` of the browser's answer to ``init`` (the handshake; both
    None for a browser without a session yet).

    Raises :class:`ProtocolError` if the frame is not that answer (or is JSON
    nested deeper than ``max_json_depth`` levels).
    """
    if isinstance(frame, bytes):
        raise ProtocolError(
            UNEXPECTED_BINARY, "expected the answer to init, got a binary frame"
        )
    try:
        data = jsonlimits.loads(frame, max_json_depth)
    except ValueError as exc:
        raise ProtocolError(BAD_JSON, f"the answer to init is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("type") != "result" or data.get("id") != 0:
        raise ProtocolError(BAD_MESSAGE, 'expected {"type": "result", "id": 0} answering init')
    sid, token = data.get("session_id"), data.get("token")
    if isinstance(sid, int) and not isinstance(sid, bool):
        sid = str(sid)
    if not isinstance(sid, str) or not isinstance(token, str):
        return None, None
    return sid, token


def _int(data: dict[str, Any], key: str, *, minimum: int = 0) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ProtocolError(
            BAD_MESSAGE, f"{data.get('type')}: {key!r} must be an integer >= {minimum}"
        )
    return value


def _decode_one(data: Any) -> BrowserMessage:
    if not isinstance(data, dict):
        raise ProtocolError(BAD_MESSAGE, "a message must be a JSON object with a 'type'")
    kind = data.get("type")
    if kind == "result":
        return Result(_int(data, "id"), data.get("value"), data)
    if kind == "error":
        msg_id = data.get("id")
        return Error(msg_id if isinstance(msg_id, int) else None, str(data.get("error", "")))
    if kind == "callback":
        action, args = data.get("action"), data.get("args", [])
        if not isinstance(action, str) or not action:
            raise ProtocolError(BAD_MESSAGE, "callback: 'action' must be a non-empty string")
        if not isinstance(args, list):
            raise ProtocolError(BAD_MESSAGE, "callback: 'args' must be a list")
        return Callback(_int(data, "wid"), action, args)
    if kind == "viewport":
        return Viewport(_int(data, "width"), _int(data, "height"))
    if kind == "binary-chunk":
        if data.get("encoding", "binary") != "binary":
            raise ProtocolError(BAD_MESSAGE, "binary-chunk: only encoding 'binary' is accepted")
        header = ChunkHeader(
            _int(data, "wid"),
            _int(data, "transfer_id"),
            _int(data, "file_index"),
            _int(data, "file_count", minimum=1),
            _int(data, "chunk_index"),
            _int(data, "num_chunks", minimum=1),
        )
        if header.chunk_index >= header.num_chunks or header.file_index >= header.file_count:
            raise ProtocolError(BAD_MESSAGE, "binary-chunk: index out of range")
        return header
    raise ProtocolError(UNKNOWN_TYPE, f"unknown message type {kind!r}")


def _parse(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        # What orjson refuses but the standard parser reads (NaN, integers past 64 bits, lone
        # surrogates) is still accepted, as it always was.
        return json.loads(text)


def decode(
    text: str, max_depth: int = jsonlimits.DEFAULT_MAX_DEPTH
) -> list[BrowserMessage | ProtocolError]:
    """Decode one text frame into its messages (an array frame gives several).

    A frame that is not JSON, or is nested deeper than ``max_depth`` levels, raises
    :class:`ProtocolError` (bad-json). Inside an array, a bad item becomes a
    :class:`ProtocolError` in the list so that the good ones are still used.
    """
    try:
        data = jsonlimits.loads(text, max_depth, _parse)
    except ValueError as exc:
        raise ProtocolError(BAD_JSON, f"frame is not JSON: {exc}") from None
    if isinstance(data, list):
        out: list[BrowserMessage | ProtocolError] = []
        for item in data:
            try:
                out.append(_decode_one(item))
            except ProtocolError as exc:
                out.append(exc)
        return out
    return [_decode_one(data)]


def is_ref(value: Any) -> bool:
    """True for a widget reference ``{"__wid__": N}``."""
    return isinstance(value, dict) and isinstance(value.get("__wid__"), int)
