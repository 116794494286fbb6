"""The pages face: HTML pages whose terminals, buttons, editors and viewers run programs per room."""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import Any

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from ..core.context import FaceContext
from ..core.face import Face
from ..core.rooms import RoomRegistry
from ..transport.callback_websocket import SocketEndpoint
from .context import PageContext
from .endpoint import PageSocket, page_routes
from .room import PageRoom


def page_slug(path: str) -> str:
    """A directory name for a page path: readable, and unique through a short hash."""
    readable = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_") or "root"
    return f"{readable}-{hashlib.sha1(path.encode()).hexdigest()[:8]}"


class PagesFace(Face):
    name = "pages"

    def __init__(self, context: FaceContext) -> None:
        super().__init__(context)
        self.rooms: dict[str, RoomRegistry[PageRoom]] = {}
        limits = context.config.server.limits
        for path, page in context.config.pages.items():
            ctx = PageContext(
                path=path,
                page=page,
                runtimes=context.runtimes,
                default_runtime=context.config.runtime.default,
                rooms_dir=context.data_dir / "rooms" / page_slug(path),
                hub_id=context.hub_id,
                max_json_depth=limits.max_json_depth,
                metrics=context.metrics,
            )
            self.rooms[path] = RoomRegistry(
                path,
                lambda name, ctx=ctx: PageRoom(name, ctx, context.bus),
                grace_period=page.grace_period,
                max_rooms=limits.max_rooms_per_namespace,
                max_clients=limits.max_clients_per_room,
                bus=context.bus,
            )
        self.sockets = [PageSocket(context, path, registry) for path, registry in self.rooms.items()]

    def socket_endpoints(self) -> list[SocketEndpoint]:
        """Each page's room socket (``<page>/ws``)."""
        return list(self.sockets)

    def routes(self) -> list[BaseRoute]:
        """Each page, then the ``[assets]`` directories (after the pages, so that a
        page inside an assets prefix is served as a page)."""
        routes: list[BaseRoute] = []
        for path in self.rooms:
            routes += page_routes(self.context, path)
        for prefix, directory in self.context.config.assets.items():
            routes.append(Mount(prefix, StaticFiles(directory=directory, html=True), name=f"assets:{prefix}"))
        return routes

    async def stop(self) -> None:
        timeout = self.context.config.server.shutdown_timeout
        await asyncio.gather(*(registry.close(timeout) for registry in self.rooms.values()))

    def registries(self) -> list[RoomRegistry[Any]]:
        return list(self.rooms.values())


__all__ = ["PageRoom", "PagesFace"]
