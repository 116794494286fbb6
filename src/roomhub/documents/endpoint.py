"""The documents face's ASGI adapter: ``/yjs/<room>`` and ``/api/documents``.

``/yjs/<room>`` speaks the y-websocket protocol (see :mod:`.protocol`) to the
``y-websocket`` npm client (``new WebsocketProvider('ws://host:port/yjs',
room, doc)``) and pycrdt providers. Close codes: 1003 for a text frame,
1007 for a frame or update that does not decode, 1008 for a policy breach
(too many awareness ids), 1009 for a frame over ``limits.max_frame_bytes``
(uvicorn), 4003 when the access hook denies (after a permission-denied
message), 1013 when a limit is reached. An invalid room name gets HTTP 400
before the handshake.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, HTTPException
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from ..connections import AsgiSocket, CloseCode, Connection, Frame
from ..faces import serve_room_socket
from ..rooms import validate_room_name
from . import protocol as p
from .access import Access, AccessRequest, decide
from .room import DocumentRoom

if TYPE_CHECKING:
    from . import DocumentsFace

log = logging.getLogger("roomhub.documents")

PREFIX = "/yjs"


def _frame_handler(writable: bool) -> Any:
    async def handle(room: DocumentRoom, conn: Connection, frame: Frame) -> None:
        if isinstance(frame, str):
            log.info("%s: text frame from %s: closing (1003)", room.name, conn.peer)
            conn.close(CloseCode.UNSUPPORTED_DATA, "binary frames only (y-websocket protocol)")
            return
        try:
            room.handle(conn, frame, writable)
        except p.ProtocolError as exc:
            log.info(
                "%s: bad frame from %s, closing (%d): %s",
                room.name, conn.peer, exc.code, exc.reason,
            )
            conn.close(exc.code, exc.reason)

    return handle


def socket_app(face: DocumentsFace) -> ASGIApp:
    """The raw ASGI app of ``/yjs/<room>``, served ahead of the router (see
    :meth:`~roomhub.faces.Face.shortcuts`): an idle connection holds no routing or
    middleware frames, only its :class:`~roomhub.connections.AsgiSocket` and handler."""
    hub = face.hub
    handlers = {True: _frame_handler(True), False: _frame_handler(False)}

    def forget(room: DocumentRoom, conn: Connection) -> None:
        room.forget(conn)

    async def socket(scope: Scope, receive: Receive, send: Send) -> None:
        name = scope["path"][len(PREFIX) + 1:]
        try:
            validate_room_name(name, hub.config.server.limits.room_name_max_length)
        except ValueError as exc:
            await _deny_http(scope, receive, send, 400, str(exc))
            return
        websocket = AsgiSocket(scope, receive, send)
        access = Access.ALLOW
        if face.access_hook is not None:
            client = websocket.client
            request = AccessRequest(
                room=name,
                headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
                query=dict(websocket.query_params),
                client=(client.host, client.port) if client else None,
            )
            access = await decide(face.access_hook, request)
        if access is Access.DENY:
            log.info("access to document %r denied to %s", name, websocket.client)
            if await websocket.accept():
                await websocket.send({"type": "websocket.send",
                                      "bytes": p.permission_denied(f"access to document {name!r} denied")})
                await websocket.close(CloseCode.FORBIDDEN, "access denied")
            return
        await serve_room_socket(
            websocket, hub, face.rooms, name, handlers[access is Access.ALLOW], left=forget,
        )

    return socket


async def _deny_http(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
    """Refuse a handshake with an HTTP response (uvicorn's denial-response extension), else 403."""
    if "websocket.http.response" in (scope.get("extensions") or {}):
        await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)
    else:
        await send({"type": "websocket.close", "code": CloseCode.POLICY_VIOLATION, "reason": detail})


def document_routes(face: DocumentsFace) -> list[BaseRoute]:
    """The REST routes of ``/api/documents`` (the socket is :func:`socket_app`)."""
    api = APIRouter(prefix="/api/documents", tags=["documents"])

    @api.get("", summary="Documents: live rooms (clients, size) and stored documents")
    async def list_documents() -> list[dict[str, Any]]:
        stored = {d.name: d for d in await face.store.documents()}
        names = sorted(set(stored) | set(face.rooms.rooms))
        result = []
        for name in names:
            room = face.rooms.get(name)
            doc = stored.get(name)
            result.append({
                "name": name,
                "live": room is not None,
                "clients": len(room.members) if room else 0,
                "size": len(room.doc.get_update()) if room else None,
                "stored_updates": doc.updates if doc else 0,
                "stored_bytes": doc.bytes if doc else 0,
            })
        return result

    @api.get("/{room}", summary="A JSON view of a document's root types")
    async def get_document(room: str) -> dict[str, Any]:
        view = await face.read_json(room)
        if view is None:
            raise HTTPException(404, f"no document {room!r}")
        return {"name": room, "live": face.rooms.get(room) is not None, "content": view}

    @api.delete("/{room}", summary="Close a document's clients and delete it from the store")
    async def delete_document(room: str) -> dict[str, Any]:
        dropped = await face.rooms.drop(room, CloseCode.GOING_AWAY, "document deleted")
        deleted = await face.store.delete(room)
        if not dropped and not deleted:
            raise HTTPException(404, f"no document {room!r}")
        return {"deleted": room, "closed_room": dropped}

    return list(api.routes)
