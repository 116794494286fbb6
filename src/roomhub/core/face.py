"""What every face shares: the :class:`Face` shape, the face socket and the room socket loop.

A face (pages, documents, actions, widgets, backends) is built from a
:class:`~roomhub.core.context.FaceContext`, gives the hub its routes and is
started and stopped with it. Every face's WebSocket is a
:class:`~roomhub.transport.callback_websocket.CallbackWebSocket`; a face whose
handling awaits serves it from a :class:`FaceSocketEndpoint` (a task per
connection, counted against ``limits.max_connections``), and
:func:`serve_room_socket` is the one loop of room-based faces: join, hand each
frame to the face, leave — with limits and errors handled the same way everywhere.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from ..logs import LOG_CONNECTION, LOG_FACE, LOG_ROOM
from ..transport.callback_websocket import CallbackWebSocket, SocketEndpoint, TaskSocketEndpoint
from ..transport.traffic import Frame
from .context import FaceContext
from .errors import CloseCode, RoomError
from .relay import PEER_HEADER, Placement
from .rooms import Room, RoomRegistry

if TYPE_CHECKING:
    from ..transport.direct_http import DirectRoute

log = logging.getLogger("roomhub.faces")

R = TypeVar("R", bound=Room)


@dataclass(frozen=True)
class Shortcut:
    """``app`` serves ``prefix`` and every path below it (``prefix/...``) for the scope types
    in ``kinds`` ("http", "websocket"); other requests go on to the router."""

    prefix: str
    app: ASGIApp
    kinds: frozenset[str] = frozenset({"http", "websocket"})


class Face:
    """A part of the hub with its own routes, built from the hub's ``context``. Subclasses set
    ``name`` and override what they need."""

    name = "face"

    def __init__(self, context: FaceContext) -> None:
        self.context = context

    def routes(self) -> list[BaseRoute]:
        return []

    def shortcuts(self) -> list[Shortcut]:
        """Raw ASGI apps served ahead of the router, by path prefix: for hot paths that need no
        routing nor FastAPI middleware. The hub still applies its origin and token checks to them."""
        return []

    def socket_endpoints(self) -> list[SocketEndpoint]:
        """The face's WebSocket endpoints, served without ASGI by the hub's HTTP protocol, by path
        prefix (:mod:`roomhub.transport.callback_websocket`): callbacks for messages handled
        synchronously, a :class:`FaceSocketEndpoint` for a task per connection. The same objects on
        every call. The hub applies its Host, origin and token checks."""
        return []

    def direct_http_routes(self) -> list[DirectRoute]:
        """HTTP requests the hub's HTTP protocol serves without ASGI, by raw path prefix (see
        :mod:`roomhub.transport.http_server`): for hot paths where even a raw ASGI app costs too much. The
        hub applies its origin and token checks to them."""
        return []

    async def start(self) -> None:
        """Called at hub start-up, before the first request."""

    async def stop(self) -> None:
        """Called at shutdown; must be bounded in time and leave nothing running."""

    def links(self) -> list[tuple[str, str]]:
        """``(title, path)`` of the pages this face serves besides configured pages (for the index)."""
        return []

    def registries(self) -> list[RoomRegistry[Any]]:
        """The room registries of this face (listed by the REST API)."""
        return []

    def overview(self) -> dict[str, Any]:
        """What the admin page shows of this face now, as JSON: ``{"rooms": [...]}``, each room
        its ``describe()`` with ``members`` (``{"id", "peer"}`` each); faces add their own keys."""
        return {"rooms": [room_overview(room) for registry in self.registries()
                          for room in list(registry.rooms.values())]}

    async def ready(self) -> list[str]:
        """Why this face cannot serve now (readiness, ``/api/ready``), ``[]`` when it can; must be
        bounded in time (a few seconds)."""
        return []


def room_overview(room: Room) -> dict[str, Any]:
    """``room.describe()`` with its members (``{"id", "peer"}``), for :meth:`Face.overview`."""
    members = [{"id": getattr(m, "id", None), "peer": getattr(m, "peer", "?")} for m in list(room.members)]
    return {**room.describe(), "members": members}


class FaceSocketEndpoint(TaskSocketEndpoint):
    """A face's socket under ``prefix`` (only that path if ``exact``) whose connections each run
    :meth:`serve` as a task (see :class:`~roomhub.transport.callback_websocket.TaskSocketEndpoint`).

    Each open connection counts against the hub's ``limits.max_connections``
    (``context.connections``): past it the handshake is refused with HTTP 503 and
    ``{"detail": "connection limit reached"}``. Subclasses check the rest of the handshake in
    :meth:`check` (e.g. 400 for a bad room name) and serve the connection in :meth:`serve`.
    """

    def __init__(self, context: FaceContext, prefix: str, *, exact: bool = False) -> None:
        super().__init__()
        self.context = context
        self.prefix = prefix
        self.exact = exact

    def check(self, sock: CallbackWebSocket, scope: dict[str, Any]) -> tuple[int, str] | None:
        """The face's own handshake check: None accepts, ``(status, message)`` refuses."""
        return None

    async def placement(self, sock: CallbackWebSocket, scope: dict[str, Any]) -> Placement | None:
        """In a cluster, the room ``sock`` belongs to (its lease key), asked before :meth:`serve`
        by :class:`~roomhub.core.relay.RoomRelay`; None: served here whatever holds what (the
        default). A face that must talk with the client to know the room (the widgets
        handshake) does it here and says so in the :class:`Placement`. Never called for a hub
        without ``[cluster]``."""
        return None

    def handshake(self, sock: CallbackWebSocket, scope: dict[str, Any]) -> tuple[int, str] | None:
        if self.context.connections.full:
            self.traffic.closing(CloseCode.TRY_AGAIN_LATER)  # counted as the 1013 the limit means
            return 503, "connection limit reached"
        relay = self.context.relay
        if relay is not None:
            refusal = relay.refusal(scope)  # a hub-to-hub connection: secret, and held here
            if refusal is not None:
                return refusal
            peer = relay.relayed_header(scope, PEER_HEADER)
            if peer is not None:
                sock.peer = peer  # logs and limits name the client, not the relaying hub
        return self.check(sock, scope)

    async def run(self, sock: CallbackWebSocket, scope: dict[str, Any]) -> None:
        relay = self.context.relay
        if relay is None:
            await self.serve(sock, scope)
        else:
            await relay.serve(self, sock, scope)

    def opened(self, sock: CallbackWebSocket, scope: dict[str, Any]) -> None:
        # Called in the same step as handshake() (nothing ran since): the check still holds.
        self.context.connections.try_acquire()
        super().opened(sock, scope)

    def closed(self, sock: CallbackWebSocket) -> None:
        self.context.connections.release()


async def serve_room_socket(
    conn: CallbackWebSocket,
    context: FaceContext,
    registry: RoomRegistry[R],
    name: str,
    handle: Callable[[R, CallbackWebSocket, Frame], Awaitable[None]],
    *,
    refused: Callable[[CallbackWebSocket, RoomError], None] | None = None,
    left: Callable[[R, CallbackWebSocket], Awaitable[None] | None] | None = None,
) -> None:
    """Run one client's room socket (``conn``, opened) to the end.

    Joins ``registry``'s room ``name`` and calls ``handle(room, connection, frame)``
    for each frame, one at a time. A refused join closes with the
    :class:`RoomError`'s code and reason (after ``refused`` had a chance to send
    an error frame). ``handle`` must turn bad input into error frames itself; an
    unexpected exception is logged and closes only this connection (1011).
    """
    room: R | None = None
    label = f"{registry.namespace}:{name}"
    conn.label = label
    # What this task (and the tasks it starts) logs names the face, the room and the client.
    traffic = registry.metrics.traffic if registry.metrics is not None else None
    LOG_FACE.set(traffic.face if traffic is not None else None)
    LOG_ROOM.set(label)
    LOG_CONNECTION.set(f"{conn.peer}#{conn.id}")
    try:
        try:
            room = await registry.join(name, conn)
        except RoomError as exc:
            if refused is not None:
                refused(conn, exc)
            conn.close(exc.code, exc.reason)
            return
        log.debug("%s joined %s (%d members)", conn.peer, label, len(room.members))
        while (frame := await conn.next_frame()) is not None:
            # Frames the client sent before it closed are still its requests (a run, then a
            # close at once): only a close the hub decided (a limit, a slow consumer) drops them.
            if conn.close_code is not None:
                break
            try:
                await handle(room, conn, frame)
            except Exception:
                log.exception("%s: handling a frame from %s failed", label, conn.peer)
                conn.close(CloseCode.INTERNAL_ERROR, "internal error")
                break
    finally:
        if room is not None:
            if left is not None:
                try:
                    result = left(room, conn)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("%s:%s: leave hook failed", registry.namespace, name)
            await registry.leave(room, conn)
        conn.close(CloseCode.NORMAL)
