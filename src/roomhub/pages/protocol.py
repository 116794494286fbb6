"""The pages protocol, sans I/O: decode client frames, encode server frames.

Wire-compatible with interactive-widgets-backend (see the reference
``pages-interactive-widgets.md``):

- client -> server: ``{"executor": NAME, "message": ...}`` as a TEXT frame;
  ``always`` takes ``{"stdin": base64}`` or ``{"size": {"cols": N, "rows": M}}``,
  ``once`` takes anything (``null`` included) as "run", file executors take
  monitor lines (``{"stdin": base64(json line)}``) or the monitor message
  itself (``{"contents": base64}``, ``{"delete": true}``).
- server -> client: ``{"executor": NAME, "message": {"type": ..., ...}}``;
  output as ``{"type": "output", "stdout"|"stderr": base64}``; ``once`` adds
  ``started``, ``finished`` and ``errored`` (base64 message).

roomhub's additions reach only a client that asks for them with the query
parameter ``roomhub=1`` (:func:`wants_additions`): ``finished`` carries
``exitCode`` and ``timedOut``; ``busy``, ``timeout``, ``exited``,
``restarted``, ``state`` (on join) and ``error`` (``code`` and plain-text
``message``) frames; frames about the room as a whole use ``"executor":
null`` (``joined``, ``error``). A client that does not ask gets exactly the
frames interactive-widgets-backend sends (its widgets decode every frame of
their executor as output, so a new ``type`` would break them): ``output``,
``started``, ``finished`` without an exit code, ``errored``; its bad input is
logged and dropped, as there is no frame to tell it.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..transport.callback_websocket import CallbackWebSocket

from .. import additions, jsonlimits
from ..core import errors

# Error codes carried by {"type": "error", "code": ...}
BAD_JSON = "bad-json"
BAD_FRAME = "bad-frame"
BINARY_UNSUPPORTED = "binary-unsupported"
UNKNOWN_EXECUTOR = "unknown-executor"
BAD_MESSAGE = "bad-message"
NOT_ACCEPTED = "not-accepted"
NOT_RUNNING = "not-running"
TOO_LARGE = "too-large"
WRITE_FAILED = "write-failed"
PATH_REFUSED = "path-refused"  # a symbolic link (or a file for a folder) on a file executor's path
START_FAILED = "start-failed"

ADDITIONS_PARAMETER = additions.PARAMETER  # ?roomhub=1: the client reads roomhub's additions


class ProtocolError(errors.ProtocolError):
    """A client frame that cannot be used; ``code`` is one of the error codes above, sent in an
    error frame. ``executor`` is set when the frame named one."""

    def __init__(self, code: str, message: str, executor: str | None = None) -> None:
        super().__init__(code, message)
        self.executor = executor


@dataclass(frozen=True)
class ClientFrame:
    executor: str
    message: Any


@dataclass(frozen=True)
class Stdin:
    data: bytes


@dataclass(frozen=True)
class Resize:
    cols: int
    rows: int


@dataclass(frozen=True)
class FileWrite:
    contents: bytes


@dataclass(frozen=True)
class FileDelete:
    pass


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise ProtocolError(BAD_MESSAGE, f"{what} must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(BAD_MESSAGE, f"{what} is not valid base64") from None


def wants_additions(value: str | None) -> bool:
    """Whether the query parameter ``roomhub`` (``value``; None when absent) asks for roomhub's
    additions (:func:`roomhub.additions.requested`). Raises :class:`ProtocolError` (bad-frame)
    for a value other than ``"1"``."""
    try:
        return additions.requested(value)
    except ValueError as exc:
        raise ProtocolError(BAD_FRAME, str(exc)) from None


def asks_additions(connection: CallbackWebSocket) -> bool:
    """Whether ``connection`` asked for roomhub's additions on its handshake (the endpoint keeps
    the answer of :func:`wants_additions` as the connection's ``state``)."""
    return connection.state is True


def decode_client(text: str | bytes, max_depth: int = jsonlimits.DEFAULT_MAX_DEPTH) -> ClientFrame:
    """Decode one client frame. Raises :class:`ProtocolError` (bad-json, bad-frame, binary-unsupported).

    JSON nested deeper than ``max_depth`` levels is bad-json.
    """
    if isinstance(text, bytes):
        raise ProtocolError(BINARY_UNSUPPORTED, "binary frames are not part of the pages protocol")
    try:
        data = jsonlimits.loads(text, max_depth)
    except ValueError as exc:
        raise ProtocolError(BAD_JSON, f"frame is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("executor"), str):
        raise ProtocolError(BAD_FRAME, 'frame must be {"executor": NAME, "message": ...}')
    return ClientFrame(data["executor"], data.get("message"))


MAX_TERMINAL = 1000


def decode_always(message: Any) -> Stdin | Resize:
    """An ``always`` executor's message: stdin bytes or a terminal size."""
    if isinstance(message, dict):
        if "stdin" in message:
            return Stdin(unb64(message["stdin"], "stdin"))
        size = message.get("size")
        if isinstance(size, dict):
            cols, rows = size.get("cols"), size.get("rows")
            if (
                isinstance(cols, int) and isinstance(rows, int)
                and 0 < cols <= MAX_TERMINAL and 0 < rows <= MAX_TERMINAL
            ):
                return Resize(cols, rows)
            raise ProtocolError(BAD_MESSAGE, f"size needs integer cols and rows in 1..{MAX_TERMINAL}")
    raise ProtocolError(BAD_MESSAGE, 'expected {"stdin": base64} or {"size": {"cols", "rows"}}')


def decode_file(
    message: Any, max_depth: int = jsonlimits.DEFAULT_MAX_DEPTH
) -> list[FileWrite | FileDelete]:
    """A file executor's message: monitor lines wrapped in stdin, or one monitor message.

    Messages that are neither are ignored, as by the interactive-widgets monitor. A line
    that is not JSON, or nested deeper than ``max_depth`` levels, is bad-message.
    """
    if not isinstance(message, dict):
        raise ProtocolError(BAD_MESSAGE, 'expected {"stdin": base64(monitor line)}')
    if "stdin" in message:
        raw = unb64(message["stdin"], "stdin")
        requests = []
        for line in raw.splitlines():
            if not line.strip():
                continue
            try:
                requests.append(jsonlimits.loads(line, max_depth))
            except ValueError as exc:
                raise ProtocolError(BAD_MESSAGE, f"monitor line is not JSON: {exc}") from None
    else:
        requests = [message]
    out: list[FileWrite | FileDelete] = []
    for req in requests:
        if not isinstance(req, dict):
            continue
        if "contents" in req:
            out.append(FileWrite(unb64(req["contents"], "contents")))
        elif req.get("delete") is True:
            out.append(FileDelete())
    return out


def encode(executor: str | None, message: dict[str, Any]) -> str:
    """One server frame as JSON text (encode once, send the same text to every member)."""
    return json.dumps({"executor": executor, "message": message}, separators=(",", ":"))


def output(executor: str, stream: str, data: bytes) -> str:
    return encode(executor, {"type": "output", stream: b64(data)})


def error(executor: str | None, code: str, message: str) -> str:
    return encode(executor, {"type": "error", "code": code, "message": message})


def errored(executor: str, message: str) -> str:
    return encode(executor, {"type": "errored", "message": b64(message.encode())})


def monitor_line(message: dict[str, str]) -> bytes:
    return json.dumps(message).encode() + b"\n"


def file_contents(executor: str, contents: bytes) -> str:
    """The monitor's ``{"contents": base64}`` line, carried in an output frame."""
    return output(executor, "stdout", monitor_line({"contents": b64(contents)}))


def file_error(executor: str, message: str) -> str:
    """The monitor's ``{"error": base64}`` line, carried in an output frame."""
    return output(executor, "stdout", monitor_line({"error": b64(message.encode())}))
