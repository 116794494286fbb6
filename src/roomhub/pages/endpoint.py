"""The pages face's endpoints: the page's HTML and its room socket.

``GET <page>`` serves the page; ``<page>/ws?roomName=R`` is the room socket
(interactive-widgets' URL layout); ``&roomhub=1`` asks for roomhub's additions
(see :mod:`.protocol`). A missing or invalid ``roomName``, or a ``roomhub``
value other than ``1``, gets HTTP 400 with a message before the handshake.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from starlette.datastructures import QueryParams
from starlette.responses import FileResponse
from starlette.routing import BaseRoute, Route

from ..core.errors import RoomError
from ..core.face import FaceSocketEndpoint, serve_room_socket
from ..core.relay import Placement, registry_room
from ..core.rooms import RoomRegistry, validate_room_name
from ..transport.callback_websocket import CallbackWebSocket
from . import protocol as p
from .room import PageRoom

if TYPE_CHECKING:
    from ..core.context import FaceContext

log = logging.getLogger("roomhub.pages")


async def handle_frame(room: PageRoom, conn: CallbackWebSocket, frame: str | bytes) -> None:
    """Hand a frame to the room; bad input is logged and, for a client that asked for roomhub's
    additions, answered by an error frame to its sender only. It never closes the connection."""
    try:
        await room.handle(conn, frame)
    except p.ProtocolError as exc:
        log.info("%s:%s: %s from %s: %s", room.namespace, room.name, exc.code, conn.peer, exc.message)
        if p.asks_additions(conn):
            conn.send(p.error(exc.executor, exc.code, exc.message))


def refused(conn: CallbackWebSocket, exc: RoomError) -> None:
    """A refused join: an error frame first to a client that reads them (the close code says why)."""
    if p.asks_additions(conn):
        conn.send(p.error(None, "room-refused", exc.reason))


class PageSocket(FaceSocketEndpoint):
    """The room socket of the page at ``path``: ``<page>/ws?roomName=R[&roomhub=1]``."""

    def __init__(self, context: FaceContext, path: str, registry: RoomRegistry[PageRoom]) -> None:
        super().__init__(context, "/ws" if path == "/" else f"{path}/ws", exact=True)
        self.registry = registry

    def _parameters(self, scope: dict[str, Any]) -> tuple[str, bool]:
        """The room name and whether roomhub's additions are asked for; raises ValueError or
        :class:`~.protocol.ProtocolError` for bad values."""
        params = QueryParams(scope["query_string"])
        name = params.get("roomName")
        validate_room_name(name, self.context.config.server.limits.room_name_max_length)
        assert name is not None
        return name, p.wants_additions(params.get(p.ADDITIONS_PARAMETER))

    def check(self, sock: CallbackWebSocket, scope: dict[str, Any]) -> tuple[int, str] | None:
        try:
            self._parameters(scope)
        except (ValueError, p.ProtocolError) as exc:
            return 400, str(exc)
        return None

    async def placement(self, sock: CallbackWebSocket, scope: dict[str, Any]) -> Placement:
        """A page room is held by one hub of a cluster: one set of programs, wherever its members are."""
        name, _ = self._parameters(scope)
        return Placement(f"pages:{self.registry.namespace}:{name}", registry_room(self.registry, name))

    async def serve(self, sock: CallbackWebSocket, scope: dict[str, Any]) -> None:
        name, additions = self._parameters(scope)
        sock.state = additions  # read by protocol.asks_additions
        await serve_room_socket(sock, self.context, self.registry, name, handle_frame, refused=refused,
                                left=PageRoom.forget)


def page_routes(context: FaceContext, path: str) -> list[BaseRoute]:
    """The page at ``path`` (its socket is a :class:`PageSocket`)."""
    page = context.config.pages[path]

    async def html(request: object) -> FileResponse:
        return FileResponse(page.html, media_type="text/html")

    return [Route(path, html, methods=["GET"])]
