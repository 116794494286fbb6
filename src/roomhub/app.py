"""Builds the ASGI app: every face's routes, the REST API, the index and the browser client."""

from __future__ import annotations

import html
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI, HTTPException
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from .core.face import Shortcut
from .hub import Hub
from .operations import operations_router
from .transport.http_server import HeadLimits, for_hub
from .transport.security import DoorMiddleware
from .tuning import freeze_startup_objects, thaw_objects
from .vendor import importmap_script

WEB_DIR = Path(__file__).parent / "web"


def node_modules_dir() -> Path:
    """Where the browser libraries installed from npm live (``make setup`` puts them there)."""
    return Path(os.environ.get("ROOMHUB_NODE_MODULES", WEB_DIR / "node_modules"))


def api_router(hub: Hub) -> APIRouter:
    api = APIRouter(prefix="/api")

    @api.get("/health", summary="Liveness: 200 while the hub runs (no auth needed)")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "hub": hub.id, "uptime": time.time() - hub.started_at}

    @api.get("/rooms", summary="Every live room of every face; in a cluster, of every hub "
             "(each entry's `hub` names its hub; another hub's rooms as its last heartbeat published "
             "them); 503 when the cluster's Redis does not answer")
    async def rooms() -> list[dict[str, Any]]:
        own = [
            {**room.describe(), "hub": hub.id}
            for face in hub.faces
            for registry in face.registries()
            for room in list(registry.rooms.values())
        ]
        if hub.cluster is None:
            return own
        import redis  # the cluster extra, present with [cluster]

        try:
            return own + await hub.cluster.other_rooms()
        except redis.RedisError as exc:
            raise HTTPException(503, f"the cluster's Redis does not answer ({exc}): "
                                     "only this hub's rooms are known") from None

    @api.delete("/rooms/{namespace:path}/{name}", summary="Close a room's clients and tear it down")
    async def drop_room(namespace: str, name: str) -> dict[str, Any]:
        if await hub.close_room(namespace, name) is not None:
            return {"dropped": name}
        raise HTTPException(404, f"no room {name!r} in namespace {namespace!r}")

    @api.get("/cluster", summary="The cluster's hubs (address, load) and room leases; 404 without [cluster]")
    async def cluster() -> dict[str, Any]:
        if hub.cluster is None:
            raise HTTPException(404, "this hub runs alone: no [cluster] in its configuration")
        return await hub.cluster.describe()

    @api.get("/metrics", summary="Counters: connections, rooms per namespace, memory")
    async def metrics() -> dict[str, Any]:
        import resource

        return {
            "connections": hub.connections.count,
            "rooms": {
                registry.namespace: len(registry.rooms)
                for face in hub.faces
                for registry in face.registries()
            },
            "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "uptime": time.time() - hub.started_at,
        }

    return api


def index_page(hub: Hub) -> str:
    items = "".join(
        f'<li><a href="{html.escape(path)}">{html.escape(page.title or path)}</a>'
        f" <code>{html.escape(path)}</code></li>"
        for path, page in hub.config.pages.items()
    ) + "".join(
        f'<li><a href="{html.escape(path)}">{html.escape(title)}</a> <code>{html.escape(path)}</code></li>'
        for face in hub.faces
        for title, path in face.links()
    )
    faces = ", ".join(f.name for f in hub.faces)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>roomhub</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/roomhub.css"></head>
<body class="rh-index"><main>
<h1>roomhub</h1>
<p>A live backend for interactive pages. Faces on this hub: {html.escape(faces)}.</p>
<h2>Pages</h2><ul>{items or "<li>No pages configured.</li>"}</ul>
<p><a href="/admin">admin: live rooms, sessions, charts</a> · <a href="/api/docs">REST API</a>
· <a href="/metrics">Prometheus metrics</a></p>
</main></body></html>"""


def server_config(hub: Hub, **overrides: Any) -> uvicorn.Config:
    """The uvicorn configuration serving ``hub`` as its configuration says (``overrides`` win)."""
    server = hub.config.server
    options: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "log_config": None,
        "log_level": server.log_level,
        # The ASGI WebSockets (the backends proxy's; every face's socket is a callback one):
        # uvicorn's protocol on the websockets library's sans-I/O core, as the callback ones.
        "ws": "websockets-sansio",
        "ws_max_size": server.limits.max_frame_bytes,
        # Off so that a broadcast frame is encoded once for all members, not compressed per client.
        "ws_per_message_deflate": False,
        "ws_ping_interval": server.ping_interval or None,
        "ws_ping_timeout": server.ping_interval or None,
        "timeout_graceful_shutdown": int(server.shutdown_timeout),
        "proxy_headers": False,
        # No access log (the CLI keeps uvicorn.access quiet): formatting one costs every request.
        "access_log": False,
    }
    direct_http = [route for face in hub.faces for route in face.direct_http_routes()]
    head_limits = HeadLimits(server.limits.header_timeout, server.limits.max_pending_connections)
    http = for_hub(hub.sockets, direct_http, hub.door, head_limits)
    if http is not None:  # uvicorn's httptools one: small responses in one write, /yjs and the
        options["http"] = http  # faces' hot HTTP paths served without ASGI
    options.update(overrides)
    return uvicorn.Config(asgi_app(hub), **options)


class PrefixDispatch:
    """ASGI: a request whose path is a shortcut's prefix, or lies under it, and whose scope type
    the shortcut takes goes straight to its app; everything else (and the lifespan) to ``app``."""

    def __init__(self, app: ASGIApp, shortcuts: list[Shortcut]) -> None:
        self.app = app
        self.shortcuts = [(s.prefix.rstrip("/"), s.prefix.rstrip("/") + "/", s.kinds, s.app)
                          for s in shortcuts]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "lifespan":
            path = scope["path"]
            for exact, under, kinds, handler in self.shortcuts:
                if kind in kinds and (path == exact or path.startswith(under)):
                    await handler(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def asgi_app(hub: Hub) -> ASGIApp:
    """What uvicorn serves: :func:`create_app`, with the faces' :meth:`~roomhub.core.face.Face.shortcuts`
    dispatched ahead of it (no routing, no FastAPI middleware, the same Host, origin and token checks)."""
    app = create_app(hub)
    shortcuts = [
        Shortcut(s.prefix, DoorMiddleware(s.app, hub.door),
                 s.kinds)
        for face in hub.faces
        for s in face.shortcuts()
    ]
    return PrefixDispatch(app, shortcuts) if shortcuts else app


def create_app(hub: Hub) -> FastAPI:
    """The ASGI app for ``hub``: its lifespan starts and stops the hub."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await hub.start()
        freeze_startup_objects()
        try:
            yield
        finally:
            await hub.stop()
            thaw_objects()

    app = FastAPI(
        title="roomhub",
        lifespan=lifespan,
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )
    app.state.hub = hub
    app.include_router(api_router(hub))
    app.include_router(operations_router(hub))
    for face in hub.faces:
        app.router.routes.extend(face.routes())
    if "/" not in hub.config.pages:
        page = index_page(hub)

        @app.get("/", include_in_schema=False)
        async def index() -> HTMLResponse:
            return HTMLResponse(page)

    vendor = node_modules_dir()
    script = importmap_script(vendor)  # logs a warning once when the libraries are missing

    @app.get("/static/importmap.js", include_in_schema=False)
    async def importmap() -> Response:
        return Response(script, media_type="text/javascript", headers={"Cache-Control": "no-cache"})

    if vendor.is_dir():
        app.mount("/static/vendor", StaticFiles(directory=vendor), name="vendor")
    app.mount("/static", StaticFiles(directory=WEB_DIR, check_dir=False), name="static")
    app.add_middleware(DoorMiddleware, door=hub.door)
    return app
