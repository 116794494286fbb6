"""The widgets face's ASGI adapter: ``/widgets/`` (the page) and ``/widgets/ws`` (its socket).

The socket follows pgwidgets' handshake: the server sends ``init``, the
browser answers with a ``result`` for id 0 carrying ``session_id`` and
``token`` when it has them; then the session is attached (and replayed) or
created. Close codes: 4001 "Invalid session credentials" for a known session
with a wrong token, 1013 when ``max_sessions`` sessions all have a browser or
the connection limit is reached, 1008 when the handshake is not answered in
time or is malformed, 1003 for a binary frame without its header, 1009 for an
oversize frame.
"""

from __future__ import annotations

import asyncio
import html
import logging
from typing import Protocol

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from ..core.context import FaceContext
from ..core.errors import CloseCode, RoomError
from ..core.rooms import RoomRegistry
from ..logs import LOG_CONNECTION, LOG_FACE
from ..transport.connections import AsgiSocket, Connection, ReceiveBudget
from ..transport.send_window import SendWindow
from . import protocol as p
from . import renderer
from .config import WidgetsConfig
from .session import WidgetSession

log = logging.getLogger("roomhub.widgets")


class WidgetsFace(Protocol):
    """What the widgets endpoint uses of its face (:class:`roomhub.widgets.WidgetsFace`)."""

    context: FaceContext
    config: WidgetsConfig
    registry: RoomRegistry[WidgetSession]

    async def open_session(self, conn: Connection, sid: str | None, token: str | None) -> WidgetSession:
        """Attach ``conn`` to session ``sid`` if ``token`` matches, or to a new session."""
        ...

    async def leave_session(self, session: WidgetSession, conn: Connection) -> None:
        """``conn`` left ``session``."""
        ...

# pgwidgets-js's RemoteInterface on this hub's socket (its own page, remote.html, points at a
# separate port). It keeps the session's credentials in the page's URL (?session=&token=) and
# sessionStorage, and answers init with them.
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{static}/Widgets.css">
<style>body {{ margin: 0; }}</style>
</head><body>
<script type="module">
import {{ Widgets }} from "{static}/Widgets.js";
const scheme = location.protocol === "https:" ? "wss:" : "ws:";
new Widgets.RemoteInterface(Widgets, {{ url: `${{scheme}}//${{location.host}}/widgets/ws` }});
</script>
</body></html>"""
STATIC = "/widgets/pgwidgets"  # where pgwidgets-js's static directory is served


async def widgets_socket(websocket: AsgiSocket, face: WidgetsFace) -> None:
    """Run one browser's widgets socket to the end (handshake, attach, frames, detach)."""
    context = face.context
    if not context.connections.try_acquire(context.metrics.traffic("widgets")):
        await websocket.close(CloseCode.TRY_AGAIN_LATER, "connection limit reached")
        return
    if not await websocket.accept():
        context.connections.release()
        return
    limits = context.config.server.limits
    conn = Connection(websocket, SendWindow.from_limits(limits), "widgets", ReceiveBudget.from_limits(limits),
                      context.metrics.traffic("widgets"))
    LOG_FACE.set("widgets")
    LOG_CONNECTION.set(f"{conn.peer}#{conn.id}")
    session: WidgetSession | None = None
    try:
        frames = conn.receive()
        conn.send(p.encode(p.init()))
        try:
            first = await asyncio.wait_for(anext(frames), face.config.handshake_timeout)
            sid, token = p.read_credentials(first, context.config.server.limits.max_json_depth)
        except (TimeoutError, StopAsyncIteration):
            await conn.aclose(CloseCode.POLICY_VIOLATION, "no answer to init")
            return
        except p.ProtocolError as exc:
            log.warning("widgets: bad handshake from %s: %s", conn.peer, exc.message)
            await conn.aclose(CloseCode.POLICY_VIOLATION, exc.message)
            return
        try:
            session = await face.open_session(conn, sid, token)
        except RoomError as exc:
            log.info("widgets: refused %s: %s", conn.peer, exc.reason)
            await conn.aclose(exc.code, exc.reason)
            return
        async for frame in frames:
            if conn.closing:
                break
            try:
                session.handle(conn, frame)
            except Exception:
                log.exception(
                    "widgets session %s: handling a frame from %s failed", session.id, conn.peer
                )
                conn.close(CloseCode.INTERNAL_ERROR, "internal error")
                break
    finally:
        if session is not None:
            await face.leave_session(session, conn)
        try:
            await conn.aclose(CloseCode.NORMAL)  # written before the server drops the TCP connection
        finally:
            context.connections.release()


def widgets_routes(face: WidgetsFace) -> list[BaseRoute]:
    """``/widgets/`` (the page), ``/widgets/pgwidgets/`` (pgwidgets-js's static files).

    Raises :class:`~.renderer.RendererMissing` when pgwidgets-js is not installed.
    """
    page = PAGE.format(title=html.escape(face.config.title), static=STATIC)
    static = StaticFiles(directory=renderer.static_dir())

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(page, headers={"cache-control": "no-store"})

    async def redirect(request: Request) -> RedirectResponse:
        query = request.url.query
        return RedirectResponse("/widgets/" + (f"?{query}" if query else ""))

    return [
        Route("/widgets", redirect, methods=["GET"]),
        Route("/widgets/", index, methods=["GET"]),
        Mount(STATIC, static, name="pgwidgets-js"),
    ]


def socket_app(face: WidgetsFace) -> ASGIApp:
    """The raw ASGI app of ``/widgets/ws``, served ahead of the router (see
    :meth:`~roomhub.core.face.Face.shortcuts`): no routing nor FastAPI middleware per frame."""

    async def socket(scope: Scope, receive: Receive, send: Send) -> None:
        await widgets_socket(AsgiSocket(scope, receive, send), face)

    return socket
