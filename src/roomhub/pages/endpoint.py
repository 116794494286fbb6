"""The pages face's ASGI adapter: the page's HTML and its room socket.

``GET <page>`` serves the page; ``<page>/ws?roomName=R`` is the room socket
(interactive-widgets' URL layout); ``&roomhub=1`` asks for roomhub's additions
(see :mod:`.protocol`). A missing or invalid ``roomName``, or a ``roomhub``
value other than ``1``, gets HTTP 400 with a message before the handshake.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.responses import FileResponse, JSONResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from ..core.errors import RoomError
from ..core.face import serve_room_socket
from ..core.rooms import RoomRegistry, validate_room_name
from ..transport.connections import Connection
from . import protocol as p
from .room import PageRoom

if TYPE_CHECKING:
    from ..core.context import FaceContext

log = logging.getLogger("roomhub.pages")


async def handle_frame(room: PageRoom, conn: Connection, frame: str | bytes) -> None:
    """Hand a frame to the room; bad input is logged and, for a client that asked for roomhub's
    additions, answered by an error frame to its sender only. It never closes the connection."""
    try:
        await room.handle(conn, frame)
    except p.ProtocolError as exc:
        log.info("%s:%s: %s from %s: %s", room.namespace, room.name, exc.code, conn.peer, exc.message)
        if p.asks_additions(conn):
            conn.send(p.error(exc.executor, exc.code, exc.message))


def refused(conn: Connection, exc: RoomError) -> None:
    """A refused join: an error frame first to a client that reads them (the close code says why)."""
    if p.asks_additions(conn):
        conn.send(p.error(None, "room-refused", exc.reason))


def page_routes(context: FaceContext, path: str, registry: RoomRegistry[PageRoom]) -> list[BaseRoute]:
    page = context.config.pages[path]

    async def html(request: object) -> FileResponse:
        return FileResponse(page.html, media_type="text/html")

    async def socket(websocket: WebSocket) -> None:
        name = websocket.query_params.get("roomName")
        try:
            validate_room_name(name, context.config.server.limits.room_name_max_length)
            additions = p.wants_additions(websocket.query_params.get(p.ADDITIONS_PARAMETER))
        except (ValueError, p.ProtocolError) as exc:
            await websocket.send_denial_response(JSONResponse({"detail": str(exc)}, status_code=400))
            return
        assert name is not None
        websocket.scope[p.ADDITIONS_SCOPE_KEY] = additions
        await serve_room_socket(
            websocket, context, registry, name, handle_frame, refused=refused,
            left=PageRoom.forget,
        )

    ws_path = "/ws" if path == "/" else f"{path}/ws"
    return [Route(path, html, methods=["GET"]), WebSocketRoute(ws_path, socket)]
