"""The widgets face's endpoints: ``/widgets/`` (the page) and ``/widgets/ws`` (its socket).

The socket follows pgwidgets' handshake: the server sends ``init``, the
browser answers with a ``result`` for id 0 carrying ``session_id`` and
``token`` when it has them; then the session is attached (and replayed) or
created. Close codes: 4001 "Invalid session credentials" for a known session
with a wrong token, 1013 when ``max_sessions`` sessions all have a browser (HTTP 503
before the handshake when the connection limit is reached), 1008 when the handshake is not answered in
time or is malformed, 1003 for a binary frame without its header, 1009 for an
oversize frame.
"""

from __future__ import annotations

import asyncio
import html
import logging
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ..core.context import FaceContext
from ..core.errors import CloseCode, RoomError
from ..core.face import FaceSocketEndpoint
from ..core.relay import Placement, registry_room
from ..core.rooms import RoomRegistry, validate_room_name
from ..logs import LOG_CONNECTION, LOG_FACE
from ..transport.callback_websocket import CallbackWebSocket
from ..transport.traffic import Frame
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

    async def open_session(self, conn: CallbackWebSocket, sid: str | None,
                           token: str | None) -> WidgetSession:
        """Attach ``conn`` to session ``sid`` if ``token`` matches, or to a new session."""
        ...

    async def leave_session(self, session: WidgetSession, conn: CallbackWebSocket) -> None:
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


class WidgetsSocket(FaceSocketEndpoint):
    """``/widgets/ws``: one browser's widgets socket (handshake, attach, frames, detach)."""

    def __init__(self, face: WidgetsFace) -> None:
        super().__init__(face.context, "/widgets/ws", exact=True)
        self.face = face

    async def greet(self, conn: CallbackWebSocket) -> tuple[str | None, str | None, Frame] | None:
        """pgwidgets' handshake: ``init`` sent, the browser's answer read: its session id and
        token (None, None for a new browser) and the answer itself; None when the connection was
        closed instead (1008 for no or a bad answer)."""
        conn.send(p.encode(p.init()))
        try:
            first = await asyncio.wait_for(conn.next_frame(), self.face.config.handshake_timeout)
            if first is None:
                return None
            sid, token = p.read_credentials(first, self.context.config.server.limits.max_json_depth)
        except TimeoutError:
            conn.close(CloseCode.POLICY_VIOLATION, "no answer to init")
            return None
        except p.ProtocolError as exc:
            log.warning("widgets: bad handshake from %s: %s", conn.peer, exc.message)
            conn.close(CloseCode.POLICY_VIOLATION, exc.message)
            return None
        return sid, token, first

    async def placement(self, conn: CallbackWebSocket, scope: dict[str, Any]) -> Placement | None:
        """In a cluster a tab's session is held by one hub: a browser coming back with its
        session's id is served where that session is (its answer to init passed on there). A new
        browser's session is made here (:meth:`serve` takes its lease)."""
        greeting = await self.greet(conn)
        conn.state = greeting
        if greeting is None or greeting[0] is None:
            return None
        sid = greeting[0]
        try:
            validate_room_name(sid, 64)
        except ValueError:
            return None  # no such session anywhere: a new one, made here (as open_session does)
        held = registry_room(self.face.registry, sid)
        return Placement(f"widgets:{sid}", held, received=(greeting[2],), sent=1)

    async def serve(self, conn: CallbackWebSocket, scope: dict[str, Any]) -> None:
        face = self.face
        LOG_FACE.set("widgets")
        LOG_CONNECTION.set(f"{conn.peer}#{conn.id}")
        conn.label = "widgets"
        session: WidgetSession | None = None
        greeting = conn.state if self.context.relay is not None else await self.greet(conn)
        if greeting is None:
            return
        sid, token, _ = greeting
        try:
            try:
                session = await face.open_session(conn, sid, token)
            except RoomError as exc:
                log.info("widgets: refused %s: %s", conn.peer, exc.reason)
                conn.close(exc.code, exc.reason)
                return
            relay = self.context.relay
            if relay is not None and session.id != sid:  # a new session: held here, found from any hub
                try:
                    await relay.claim(f"widgets:{session.id}", registry_room(face.registry, session.id))
                except Exception as exc:
                    log.warning("widgets: session %s cannot be held in the cluster: %s", session.id, exc)
                    conn.close(CloseCode.TRY_AGAIN_LATER, "cluster unavailable: try again later")
                    return
            while (frame := await conn.next_frame()) is not None:
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
