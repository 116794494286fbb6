"""The actions protocol, sans I/O: decode client frames, encode server frames.

Wire-compatible with the Igor server (JSON text frames, see the reference
``actions-igor.md``):

- client -> server: a call ``{"streamId": S, "action": NAME, "data": ANY}``;
  Igor's ``introduce_self`` action (``data: {"client_id": ID}``) gives the
  connection the client id ``ID`` (what a process's ``send(..., client_id=ID)``
  addresses); with ``"token": T`` it resumes the session ``ID`` and its data.
- server -> client, per call: zero or more ``{"streamId": S, "data": ANY}``,
  then maybe ``{"streamId": S, "error": TEXT}``, then always
  ``{"streamId": S, "close": true}``.
- from a process: ``{"streamId": PROCESS_ID, "action": NAME, "data": ANY}``,
  ``{"streamId": PROCESS_ID, "error": TEXT}``, ``{"streamId": PROCESS_ID, "close": true}``.
- protocol errors without a stream: ``{"error": TEXT, "code": INT}``.

Additions an Igor client can ignore: ``{"streamId": S, "cancel": true}`` from
the client stops a running call (answered by ``close`` with
``"cancelled": true``); errors carry a ``code`` (HTTP-like: 400 bad request,
404 unknown action, 409 stream id in use, 422 data of the wrong shape, 429
too many calls, 499 cancelled, 500 handler failed) and, in debug mode, a
``traceback``. A call whose stream id is known always ends with ``close``,
even when refused, so a client never waits forever.

Frames an Igor client would misread are sent only to a client that asks for
roomhub's additions with the query parameter ``roomhub=1`` (:func:`wants_additions`):
the session frame ``{"session": {"id", "token", "resumed", "timeout"}}`` first
on connect (Igor's clients read the first frame as the answer to their first
call), and the answer to ``introduce_self`` (a data frame ``{"clientId",
"sessionId", "resumed"}`` and ``close``; Igor answers nothing when it succeeds).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson

from .. import additions, jsonlimits
from ..core import errors

# Error codes (HTTP-like, as Igor's 400/503).
BAD_REQUEST = 400
UNKNOWN_ACTION = 404
STREAM_IN_USE = 409
TOO_LARGE = 413
UNSUPPORTED = 415
BAD_DATA = 422
TOO_MANY_CALLS = 429
CANCELLED = 499
HANDLER_FAILED = 500

INTRODUCE_SELF = "introduce_self"
ADDITIONS_PARAMETER = additions.PARAMETER  # ?roomhub=1: the client reads roomhub's additions
MAX_STREAM_ID_LENGTH = 256
MAX_ACTION_LENGTH = 256
MAX_CLIENT_ID_LENGTH = 256

_strict_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_decode = json.JSONDecoder().decode


def _encode(message: dict[str, Any]) -> str:
    """orjson's compact UTF-8 JSON, with the standard encoder's rules where they differ.

    orjson writes NaN and infinities as ``null`` and refuses non-string keys and integers past
    64 bits: any output with a ``null`` and any ``TypeError`` go through the standard encoder,
    which gives the same text or raises ``ValueError``/``TypeError`` as before.
    """
    try:
        out = orjson.dumps(message)
    except TypeError:
        return _strict_encode(message)
    if b"null" in out:
        return _strict_encode(message)
    return out.decode()


def wants_additions(value: str | None) -> bool:
    """Whether the query parameter ``roomhub`` (``value``; None when absent) asks for roomhub's
    additions (:func:`roomhub.additions.requested`). Raises :class:`ProtocolError` (bad-request)
    for a value other than ``"1"``."""
    try:
        return additions.requested(value)
    except ValueError as exc:
        raise ProtocolError(BAD_REQUEST, str(exc)) from None


class ProtocolError(errors.ProtocolError):
    """A client frame that cannot be used: ``code`` is one of the error codes above, sent in
    an error frame. ``stream_id`` is set when the frame named one."""

    def __init__(self, code: int, message: str, stream_id: str | None = None) -> None:
        super().__init__(code, message)
        self.stream_id = stream_id


@dataclass(frozen=True, slots=True)
class Call:
    stream_id: str
    action: str
    data: Any


@dataclass(frozen=True, slots=True)
class Cancel:
    stream_id: str


@dataclass(frozen=True, slots=True)
class Introduce:
    """Igor's ``introduce_self``: take the client id ``client_id``; with ``token``, resume the
    session of that id."""

    stream_id: str
    client_id: str
    token: str | None


ClientMessage = Call | Cancel | Introduce


def decode(frame: str | bytes, max_depth: int = jsonlimits.DEFAULT_MAX_DEPTH) -> ClientMessage:
    """Decode one client frame or raise :class:`ProtocolError` saying what is wrong.

    Binary frames are refused (415); the text must be a JSON object with a
    string ``streamId`` (Igor's messages: "No streamId specified", "No action
    specified") nested at most ``max_depth`` levels (400 past it).
    """
    if isinstance(frame, bytes):
        raise ProtocolError(UNSUPPORTED, "binary frames are not supported: send JSON text")
    try:
        msg = jsonlimits.loads(frame, max_depth, _decode)
    except ValueError as exc:
        raise ProtocolError(BAD_REQUEST, f"not JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise ProtocolError(BAD_REQUEST, "a message must be a JSON object")
    stream_id = msg.get("streamId")
    if stream_id is None or stream_id == "":
        raise ProtocolError(BAD_REQUEST, "No streamId specified")
    if not isinstance(stream_id, str) or len(stream_id) > MAX_STREAM_ID_LENGTH:
        raise ProtocolError(
            BAD_REQUEST, f"streamId must be a string of at most {MAX_STREAM_ID_LENGTH} characters"
        )
    if msg.get("cancel") is True:
        return Cancel(stream_id)
    action = msg.get("action")
    if action is None or action == "":
        raise ProtocolError(BAD_REQUEST, "No action specified", stream_id)
    if not isinstance(action, str) or len(action) > MAX_ACTION_LENGTH:
        raise ProtocolError(
            BAD_REQUEST,
            f"action must be a string of at most {MAX_ACTION_LENGTH} characters",
            stream_id,
        )
    data = msg.get("data")
    if action == INTRODUCE_SELF:
        client_id = data.get("client_id") if isinstance(data, dict) else None
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(client_id, str) or not client_id:
            raise ProtocolError(BAD_REQUEST, "No client_id for introduce_self action", stream_id)
        if len(client_id) > MAX_CLIENT_ID_LENGTH:
            message = f"introduce_self: client_id must be at most {MAX_CLIENT_ID_LENGTH} characters"
            raise ProtocolError(BAD_REQUEST, message, stream_id)
        if token is not None and not isinstance(token, str):
            raise ProtocolError(BAD_REQUEST, "introduce_self: token must be a string", stream_id)
        return Introduce(stream_id, client_id, token)
    return Call(stream_id, action, data)


def encode(message: dict[str, Any]) -> str:
    """Compact JSON; raises ``TypeError``/``ValueError`` for data JSON cannot carry."""
    return _encode(message)


def data(stream_id: str, value: Any) -> str:
    return _encode({"streamId": stream_id, "data": value})


def error(stream_id: str, message: str, code: int | None = None, traceback: str | None = None) -> str:
    msg: dict[str, Any] = {"streamId": stream_id, "error": message}
    if code is not None:
        msg["code"] = code
    if traceback:
        msg["traceback"] = traceback
    return _encode(msg)


def close(stream_id: str, cancelled: bool = False) -> str:
    if cancelled:
        return _encode({"streamId": stream_id, "close": True, "cancelled": True})
    return _encode({"streamId": stream_id, "close": True})


def protocol_error(message: str, code: int) -> str:
    return _encode({"error": message, "code": code})


def process_message(process_id: str, action: str | None, value: Any) -> str:
    """A process's message (Igor: ``{"streamId": process_id, "action": ..., "data": ...}``)."""
    return _encode({"streamId": process_id, "action": action, "data": value})


def introduced(stream_id: str, client_id: str, session_id: str, resumed: bool) -> str:
    """The answer to ``introduce_self`` for a client that asked for the additions."""
    answer = {"clientId": client_id, "sessionId": session_id, "resumed": resumed}
    return _encode({"streamId": stream_id, "data": answer})


def welcome(session_id: str, token: str, resumed: bool, timeout: float) -> str:
    """The first frame of a connection that asked for the additions: the session to resume
    after a reconnect (``timeout`` in seconds)."""
    return _encode({"session": {"id": session_id, "token": token, "resumed": resumed, "timeout": timeout}})
