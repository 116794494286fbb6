"""The actions face's endpoints: the ``/actions`` socket and the file server routes.

``/actions[?roomhub=1&sessionId=ID&sessionToken=T]`` is the WebSocket (Igor's
message shapes, see :mod:`.protocol`), and so is ``/actions/<anything>``
(Igor ignored the path). ``roomhub=1`` asks for roomhub's additions (the
session frame first); without it the client gets only frames Igor sent. With
a valid id and token the session is resumed, otherwise a new one is made.
Refusals: HTTP 503 when the connection limit is reached, 1013 when the session limit
is, 1009 for a
frame over the limit, 1008 for a call flood or an unknown ``roomhub`` value,
4009 when another connection resumed this session.

The file server (``[actions.files] enabled = true``) answers ``GET``,
``PUT`` (``POST`` as Igor's alias) and ``DELETE`` on ``<prefix>/<path>``.
Encoded slashes, backslashes and NULs in the raw path get 400 before
anything else; :mod:`.files` refuses the rest. Pages of the origins in
``[actions.files] allowed_origins`` may use it from elsewhere (CORS, the Fetch
standard, through Starlette's ``CORSMiddleware``): preflights (``OPTIONS``) are
answered, responses carry ``Access-Control-Allow-Origin``. A write or delete
whose ``Origin`` is neither the hub's nor allowed gets 403 (a cross-site form
or ``fetch`` needs no preflight to send one). Token auth is the hub's
middleware's.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import re
from typing import TYPE_CHECKING, Any

from starlette.datastructures import QueryParams
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..core.errors import CloseCode
from ..core.face import FaceSocketEndpoint
from ..core.relay import HeldRoom, Placement
from ..core.sessions import SessionLimitReached
from ..logs import LOG_CONNECTION, LOG_FACE
from ..transport.callback_websocket import CallbackWebSocket
from ..transport.security import origin_allowed
from .files import FileAccessError, FileServer
from .protocol import ADDITIONS_PARAMETER, ProtocolError, wants_additions
from .session import ActionsState

if TYPE_CHECKING:
    from ..core.context import FaceContext

log = logging.getLogger("roomhub.actions")

_ENCODED_SEPARATOR = re.compile(rb"%(2f|5c|00)", re.IGNORECASE)


class ActionsSocket(FaceSocketEndpoint):
    """``/actions`` and every path below it (Igor's Angular client appends its id; it is ignored)."""

    def __init__(self, context: FaceContext, state: ActionsState, held: HeldRoom | None = None) -> None:
        super().__init__(context, "/actions")
        self.state = state
        self.held = held or HeldRoom(alive=state.alive, drop=state.drop)

    async def placement(self, conn: CallbackWebSocket, scope: dict[str, Any]) -> Placement:
        """In a cluster every actions client is served by one hub, the holder of the room
        ``actions`` (where the processes run): one scope, one session table, output to any
        client id, wherever the client connected."""
        return Placement("actions", self.held)

    async def serve(self, conn: CallbackWebSocket, scope: dict[str, Any]) -> None:
        LOG_FACE.set("actions")
        LOG_CONNECTION.set(f"{conn.peer}#{conn.id}")
        conn.label = "actions"
        params = QueryParams(scope["query_string"])
        try:
            additions = wants_additions(params.get(ADDITIONS_PARAMETER))
        except ProtocolError as exc:
            conn.close(CloseCode.POLICY_VIOLATION, exc.message)
            return
        session_id, token = params.get("sessionId"), params.get("sessionToken")
        try:
            await self.state.restore(session_id, token)
            client = self.state.open(conn, session_id, token, additions)
        except SessionLimitReached as exc:
            conn.close(CloseCode.TRY_AGAIN_LATER, f"session limit reached: {exc}")
            return
        try:
            while (frame := await conn.next_frame()) is not None:
                if conn.closing:
                    break
                client.handle(frame)
        finally:
            self.state.leave(client)


def _error(exc: FileAccessError) -> JSONResponse:
    return JSONResponse({"detail": exc.message}, status_code=exc.status)


_CORS_METHODS = ("GET", "HEAD", "PUT", "POST", "DELETE")
_CORS_HEADERS = ("Content-Type", "X-Requested-With", "Authorization")  # Igor allowed the first two


def file_routes(files: FileServer, prefix: str, allowed_origins: list[str] | None = None) -> list[BaseRoute]:
    """The file server's routes below ``prefix``; pages of ``allowed_origins`` (``"*"``: any) may
    use them from another origin (CORS)."""
    raw_prefix = prefix.encode()
    origins = list(allowed_origins or [])

    async def read_body(request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > files.max_bytes:
            raise FileAccessError(413, f"body larger than {files.max_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > files.max_bytes:
                raise FileAccessError(413, f"body larger than {files.max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def endpoint(request: Request) -> Response:
        raw = request.scope.get("raw_path") or request.url.path.encode()
        raw = raw[len(raw_prefix) :] if raw.startswith(raw_prefix) else raw
        path = request.path_params["path"]
        try:
            if request.method == "OPTIONS":  # not a preflight (those are CORSMiddleware's)
                return Response(status_code=204, headers={"Allow": ", ".join((*_CORS_METHODS, "OPTIONS"))})
            if request.method not in ("GET", "HEAD") and not origin_allowed(request.scope, origins):
                raise FileAccessError(403, f"origin {request.headers['origin']} may not change files")
            if _ENCODED_SEPARATOR.search(raw):
                raise FileAccessError(400, "encoded '/', '\\' or NUL in the path")
            if request.method in ("GET", "HEAD"):
                data = await asyncio.to_thread(files.read, path)
                media = mimetypes.guess_type(path)[0] or "application/octet-stream"
                return Response(data, media_type=media)
            if request.method in ("PUT", "POST"):
                body = await read_body(request)
                created = await asyncio.to_thread(files.write, path, body)
                return JSONResponse(
                    {"message": "File saved.", "path": path, "bytes": len(body)},
                    status_code=201 if created else 200,
                )
            await asyncio.to_thread(files.delete, path)
            return JSONResponse({"message": "File deleted.", "path": path})
        except FileAccessError as exc:
            log.info(
                "file server: %s %s refused: %s (%d)",
                request.method,
                request.url.path,
                exc.message,
                exc.status,
            )
            return _error(exc)

    async def bare(request: Request) -> Response:
        return _error(FileAccessError(400, "name a file below the root"))

    methods = [*_CORS_METHODS, "OPTIONS"]
    cors = [Middleware(CORSMiddleware, allow_origins=origins, allow_methods=_CORS_METHODS,
                       allow_headers=_CORS_HEADERS)]
    return [
        Route(prefix + "/{path:path}", endpoint, methods=methods, middleware=cors),
        Route(prefix, bare, methods=methods, middleware=cors),
    ]
