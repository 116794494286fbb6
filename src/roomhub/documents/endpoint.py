"""The documents face's adapters: the ``/yjs/<room>`` socket and the ``/api/documents`` routes.

``/yjs/<room>`` speaks the y-websocket protocol (see :mod:`.protocol`) to the
``y-websocket`` npm client (``new WebsocketProvider('ws://host:port/yjs',
room, doc)``) and pycrdt providers. It is a callback endpoint
(:mod:`roomhub.transport.callback_websocket`): a connection holds no task while idle,
and every frame is handled in the turn of the loop it arrives in (a fast
sender's frames a turn's worth at a time, within its receive budget). Close
codes: 1003 for a text frame, 1007 for a frame or update that does not
decode, 1008 for a policy breach (too many awareness ids, too many frames
before the room is ready, too many updates waiting for missing ones), 1009
for a frame over ``limits.max_frame_bytes``, 4003 when the access hook
denies (after a permission-denied message), 4008 for a client that does not
read (``limits.send_buffer_bytes``), 4029 for a client held back by
``limits.receive_rate`` for ``limits.receive_throttled_close`` seconds, 1013
when a limit is reached, 4011 when the room cannot be loaded, 1011 for a
keepalive ping left unanswered. An invalid room name gets HTTP 400 before the handshake.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol
from urllib.parse import parse_qsl

from fastapi import APIRouter, HTTPException
from starlette.routing import BaseRoute

from ..core.context import FaceContext
from ..core.errors import CloseCode, RoomError
from ..core.rooms import RoomRegistry, validate_room_name
from ..transport.callback_websocket import CallbackWebSocket, SocketEndpoint
from ..transport.traffic import Frame
from . import protocol as p
from .access import Access, AccessHook, AccessRequest, decide
from .room import DocumentRoom
from .stores import DocumentStore

log = logging.getLogger("roomhub.documents")


class DocumentsFace(Protocol):
    """What the documents endpoints use of their face (:class:`roomhub.documents.DocumentsFace`)."""

    context: FaceContext
    rooms: RoomRegistry[DocumentRoom]
    store: DocumentStore
    access_hook: AccessHook | None

    async def read_json(self, name: str) -> dict[str, Any] | None:
        """The JSON view of document ``name`` (live, or read from the store); None if unknown."""
        ...

PREFIX = "/yjs"


class _Connection(p.Join):
    """A connection's join states (:class:`protocol.Join`) and, once JOINED, its room."""

    __slots__ = ("room",)

    def __init__(self) -> None:
        super().__init__()
        self.room: DocumentRoom | None = None


class DocumentSockets(SocketEndpoint):
    """``/yjs/<room>``: each connection joins the document room ``<room>`` of ``face``.

    ``sock.state`` is the connection's :class:`_Connection` (None when it was refused
    for the connection limit); the join is the only task a connection has.
    """

    prefix = PREFIX

    def __init__(self, face: DocumentsFace) -> None:
        self.face = face
        self.joins: set[asyncio.Task[None]] = set()

    def handshake(self, sock: CallbackWebSocket, scope: dict[str, Any]) -> tuple[int, str] | None:
        name = scope["path"][len(PREFIX) + 1:]
        try:
            validate_room_name(name, self.face.context.config.server.limits.room_name_max_length)
        except ValueError as exc:
            return 400, str(exc)
        return None

    def opened(self, sock: CallbackWebSocket, scope: dict[str, Any]) -> None:
        if not self.face.context.connections.try_acquire():
            sock.close(CloseCode.TRY_AGAIN_LATER, "connection limit reached")
            return
        sock.state = _Connection()
        task = asyncio.create_task(self._join(sock, scope), name=f"yjs-join:{sock.path}")
        self.joins.add(task)
        task.add_done_callback(self.joins.discard)

    async def _join(self, sock: CallbackWebSocket, scope: dict[str, Any]) -> None:
        face = self.face
        state: _Connection = sock.state
        name = sock.path[len(PREFIX) + 1:]
        access = Access.ALLOW
        if face.access_hook is not None:
            request = AccessRequest(
                room=name,
                headers={k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
                query=dict(parse_qsl(scope["query_string"].decode("latin-1"))),
                client=scope["client"],
            )
            access = await decide(face.access_hook, request)
        if access is Access.DENY:
            log.info("access to document %r denied to %s", name, sock.peer)
            state.leave()
            sock.send(p.permission_denied(f"access to document {name!r} denied"))
            sock.close(CloseCode.FORBIDDEN, "access denied")
            return
        if sock.closing:
            return
        try:
            room = await face.rooms.join(name, sock)
        except RoomError as exc:
            state.leave()
            sock.close(exc.code, exc.reason)
            return
        state.room = room
        if state.phase is not p.JoinPhase.JOINING:  # it left while the room was loading
            self._leave(sock, room)
            return
        early = state.joined(access is Access.ALLOW)
        log.debug("%s joined %s (%d members)", sock.peer, name, len(room.members))
        for message in early:
            if sock.closing:
                break
            self._handle(sock, room, state.writable, message)

    def received(self, sock: CallbackWebSocket, message: Frame) -> None:
        state: _Connection | None = sock.state
        if state is None or sock.closing:
            return
        try:
            now = state.receive(message)
        except p.ProtocolError as exc:
            log.info("%s: bad frame from %s, closing (%d): %s", sock.path, sock.peer, exc.code, exc.reason)
            sock.close(exc.code, exc.reason)
            return
        if now:
            assert state.room is not None
            self._handle(sock, state.room, state.writable, message)  # type: ignore[arg-type]

    def _handle(self, sock: CallbackWebSocket, room: DocumentRoom, writable: bool, frame: bytes) -> None:
        try:
            room.handle(sock, frame, writable)
        except p.ProtocolError as exc:
            log.info("%s: bad frame from %s, closing (%d): %s", room.name, sock.peer, exc.code, exc.reason)
            sock.close(exc.code, exc.reason)

    def closed(self, sock: CallbackWebSocket) -> None:
        state: _Connection | None = sock.state
        if state is None:  # refused before joining: it never held a connection slot
            return
        if state.leave() and state.room is not None:
            self._leave(sock, state.room)
        self.face.context.connections.release()

    def _leave(self, sock: CallbackWebSocket, room: DocumentRoom) -> None:
        room.forget(sock)
        task = asyncio.ensure_future(self.face.rooms.leave(room, sock))
        self.joins.add(task)
        task.add_done_callback(self.joins.discard)


def document_routes(face: DocumentsFace) -> list[BaseRoute]:
    """The REST routes of ``/api/documents`` (the socket is :class:`DocumentSockets`)."""
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
                "size": room.size() if room else None,
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
