"""The actions face's ASGI adapter: the ``/actions`` socket and the file server routes.

``/actions[?roomhub=1&sessionId=ID&sessionToken=T]`` is the WebSocket (Igor's
message shapes, see :mod:`.protocol`), and so is ``/actions/<anything>``
(Igor ignored the path). ``roomhub=1`` asks for roomhub's additions (the
session frame first); without it the client gets only frames Igor sent. With
a valid id and token the session is resumed, otherwise a new one is made.
Refusals: 1013 when the connection or session limit is reached, 1009 for a
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
from typing import TYPE_CHECKING

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..core.errors import CloseCode
from ..core.sessions import SessionLimitReached
from ..logs import LOG_CONNECTION, LOG_FACE
from ..transport.connections import AsgiSocket, Connection, ReceiveBudget
from ..transport.security import origin_allowed
from ..transport.send_window import SendWindow
from .files import FileAccessError, FileServer
from .protocol import ADDITIONS_PARAMETER, ProtocolError, wants_additions
from .session import ActionsState

if TYPE_CHECKING:
    from ..core.context import FaceContext

log = logging.getLogger("roomhub.actions")

_ENCODED_SEPARATOR = re.compile(rb"%(2f|5c|00)", re.IGNORECASE)


def socket_app(context: FaceContext, state: ActionsState) -> ASGIApp:
    """The raw ASGI app of ``/actions`` and ``/actions/<anything>`` (Igor's Angular client appends
    its id; it is ignored). Served ahead of the router (see :meth:`~roomhub.core.face.Face.shortcuts`)."""
    limits = context.config.server.limits

    async def socket(scope: Scope, receive: Receive, send: Send) -> None:
        websocket = AsgiSocket(scope, receive, send)
        if not context.connections.try_acquire(context.metrics.traffic("actions")):
            await websocket.close(CloseCode.TRY_AGAIN_LATER, "connection limit reached")
            return
        conn: Connection | None = None
        try:
            if not await websocket.accept():
                return
            budget = ReceiveBudget.from_limits(limits)
            conn = Connection(websocket, SendWindow.from_limits(limits), "actions", budget,
                              context.metrics.traffic("actions"))
            LOG_FACE.set("actions")
            LOG_CONNECTION.set(f"{conn.peer}#{conn.id}")
            params = websocket.query_params
            try:
                additions = wants_additions(params.get(ADDITIONS_PARAMETER))
            except ProtocolError as exc:
                await conn.aclose(CloseCode.POLICY_VIOLATION, exc.message)
                return
            try:
                client = state.open(conn, params.get("sessionId"), params.get("sessionToken"), additions)
            except SessionLimitReached as exc:
                await conn.aclose(CloseCode.TRY_AGAIN_LATER, f"session limit reached: {exc}")
                return
            try:
                async for frame in conn.receive():
                    if conn.closing:
                        break
                    client.handle(frame)
            except Exception:
                log.exception("actions: handling a frame from %s failed", conn.peer)
                conn.close(CloseCode.INTERNAL_ERROR, "internal error")
            finally:
                state.leave(client)
        finally:
            if conn is not None:
                # A close we started (close_code set) may still be flushing: give it time. A
                # client that went away gets nothing more: stop the writer at once.
                await conn.aclose(CloseCode.NORMAL, timeout=2.0 if conn.close_code is not None else 0)
            context.connections.release()

    return socket


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
