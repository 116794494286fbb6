"""The documents face: shared Yjs documents over the y-websocket protocol, persisted in a store.

Server-side Python API (from an action, a page or any code holding the hub)::

    face = hub.face("documents")
    async with face.document("notes") as room:      # loads it if nobody is connected
        with room.doc.transaction():
            room.doc.get("text", type=pycrdt.Text).insert(0, "hello ")
    # the change reached every client of "notes" and the store

``face.get_room(name)`` returns a live room (or None) without creating it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from pycrdt import Doc
from starlette.routing import BaseRoute

from ..core.context import FaceContext
from ..core.errors import HubError
from ..core.face import Face
from ..core.rooms import RoomRegistry, validate_room_name
from ..transport.callback_websocket import PreparedMessage, SocketEndpoint
from ..transport.traffic import Frame
from . import protocol
from .access import Access, AccessRequest, load_hook
from .config import DocumentsConfig
from .endpoint import DocumentSockets, document_routes
from .replication import Replication
from .room import DocumentContext, DocumentRoom, root_types_json
from .stores import DocumentStore, MemoryStore, PostgresStore, SQLiteStore, load_into


class _ServerMember:
    """A room member standing for Python code: keeps the room alive, receives nothing."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.peer = "server"
        self.closing = False

    is_drained = True  # it takes everything at once

    @property
    def drained(self) -> asyncio.Event:
        event = asyncio.Event()
        event.set()
        return event

    def send(self, frame: Frame | PreparedMessage) -> bool:
        return True

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.closing = True


def make_store(config: DocumentsConfig, data_dir: Any) -> DocumentStore:
    """The store named by ``config.store``; a relative SQLite path is under ``data_dir``."""
    if config.store == "memory":
        return MemoryStore(compact_after=config.compact_after)
    if config.store == "postgres":
        pg = config.postgres
        assert pg.dsn is not None  # the configuration's validation took it from the environment if needed
        return PostgresStore(
            pg.dsn, commit_window=pg.commit_window, compact_after=config.compact_after,
            pool_size=pg.pool_size, connect_timeout=pg.connect_timeout,
        )
    path = config.sqlite.path
    if not path.is_absolute():
        path = data_dir / path
    return SQLiteStore(
        path,
        commit_window=config.sqlite.commit_window,
        synchronous=config.sqlite.synchronous,
        compact_after=config.compact_after,
    )


class DocumentsFace(Face):
    name = "documents"

    def __init__(self, context: FaceContext) -> None:
        super().__init__(context)
        config: DocumentsConfig = context.config.documents
        self.config = config
        limits = context.config.server.limits
        self.store = make_store(config, context.data_dir)
        self.store.metrics = context.metrics
        self.access_hook = load_hook(config.access)
        self._room_context = ctx = DocumentContext(
            self.store,
            max_awareness_clients=config.max_awareness_clients,
            max_json_depth=limits.max_json_depth,
        )
        self.rooms: RoomRegistry[DocumentRoom] = RoomRegistry(
            "yjs",
            lambda name: DocumentRoom(name, ctx, context.bus),
            grace_period=config.grace_period,
            max_rooms=limits.max_rooms_per_namespace,
            max_clients=limits.max_clients_per_room,
            bus=context.bus,
        )
        self._keepalive: asyncio.Task[None] | None = None
        self.replication: Replication | None = None  # in a cluster (context.cluster), from start()
        self.sockets = DocumentSockets(self)

    def routes(self) -> list[BaseRoute]:
        return document_routes(self)

    def socket_endpoints(self) -> list[SocketEndpoint]:
        return [self.sockets]

    def registries(self) -> list[RoomRegistry[Any]]:
        return [self.rooms]

    async def ready(self) -> list[str]:
        """Not ready while the store does not answer."""
        try:
            await self.store.ping()
        except Exception as exc:
            return [f"documents: the {self.store.name} store does not answer: {exc!r}"]
        return []

    async def start(self) -> None:
        try:
            await self.store.open()
        except ConnectionError as exc:  # a database store's server unreachable: refuse to start
            raise HubError(f"documents: {exc}") from None
        cluster = self.context.cluster
        if cluster is not None:
            self.replication = Replication(
                cluster.config.redis, cluster.config.prefix, cluster.run,
                stream_length=cluster.config.stream_length,
            )
            self.replication.start()
            self._room_context.replication = self.replication
        if self.config.keepalive_interval > 0:
            self._keepalive = asyncio.create_task(
                self._keepalive_loop(), name="documents-keepalive"
            )

    async def stop(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive
        await self.rooms.close(self.context.config.server.shutdown_timeout)
        if self.replication is not None:
            await self.replication.stop()
        await self.store.close()

    async def _keepalive_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.keepalive_interval)
            for room in list(self.rooms.rooms.values()):
                room.broadcast(protocol.KEEPALIVE)

    # -- server-side Python API ------------------------------------------------
    def get_room(self, name: str) -> DocumentRoom | None:
        """The live room ``name``, or None (nothing is created or loaded)."""
        return self.rooms.get(name)

    @contextlib.asynccontextmanager
    async def document(self, name: str) -> AsyncIterator[DocumentRoom]:
        """Hold document room ``name`` (created and loaded if needed) for the ``with`` block.

        Change ``room.doc`` (a :class:`pycrdt.Doc`) freely: every change is
        broadcast to the room's clients and appended to the store. Raises
        ``ValueError`` for an invalid name, :class:`roomhub.core.rooms.RoomError`
        when a limit is reached.
        """
        validate_room_name(name, self.context.config.server.limits.room_name_max_length)
        member = _ServerMember(f"server:{name}")
        room = await self.rooms.join(name, member)
        try:
            yield room
        finally:
            room.forget(member)
            await self.rooms.leave(room, member)

    async def read_json(self, name: str) -> dict[str, Any] | None:
        """The JSON view of document ``name`` (live, or read from the store); None if unknown."""
        room = self.rooms.get(name)
        if room is not None:
            return room.to_json()
        updates = await self.store.load(name)
        if not updates:
            return None
        doc = Doc()
        load_into(doc, updates)
        return root_types_json(doc)


__all__ = ["Access", "AccessRequest", "DocumentRoom", "DocumentsFace"]
