"""The backends face: HTTP services installed on demand, per partition, behind the hub's proxy.

Modules: :mod:`.protocol` (queries, install inputs, events; sans I/O),
:mod:`.packages` (manifests and catalogs), :mod:`.builds` (venvs and
images keyed by a fingerprint), :mod:`.containers` (Docker through
aiodocker), :mod:`.instances` (start, readiness, logs, stop),
:mod:`.partition` (partitions are rooms), :mod:`.install` (the install
sequence), :mod:`.proxy` (the streaming proxy: WebSockets and its ASGI
form), :mod:`.exchange` (its HTTP requests, served by the hub's HTTP
protocol without ASGI), :mod:`.upstream` (keep-alive connections to the
instances) and :mod:`.endpoint` (routes).

Python API: ``face = hub.face("backends")``, then
``await face.install(["pyrun_backend#^0.2.0"], partition="P")`` and
``face.partitions`` / ``face.catalog``.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from starlette.routing import BaseRoute
from starlette.types import Scope

from ..core.context import FaceContext
from ..core.face import Face, Shortcut
from ..core.rooms import RoomRegistry
from ..transport.callback_websocket import SocketEndpoint
from ..transport.direct_http import DirectRoute
from . import protocol
from .builds import Builder
from .containers import DockerEngine
from .endpoint import PartitionSocket, backend_routes
from .hubs import PartitionHubs
from .install import Installer
from .instances import Instance, Launcher
from .packages import SHIPPED_CATALOG, Catalog
from .partition import Partitions
from .proxy import BackendProxy


class BackendsFace(Face):
    """Owns the catalog, the builder, the launcher, the partitions and the proxy."""

    name = "backends"

    def __init__(self, context: FaceContext) -> None:
        super().__init__(context)
        config = context.config.backends
        assert config is not None
        self.config = config
        root = context.data_dir / "backends"
        catalogs = [*config.catalogs, *([SHIPPED_CATALOG] if config.shipped else [])]
        self.catalog = Catalog(catalogs, root / "unpacked")
        self.engine = DockerEngine(config.docker_url or context.config.runtime.docker.url, context.hub_id)
        self.builder = Builder(root / "builds", self.engine, config.build_timeout)
        # Made in start(): a Hub built only to check the configuration must leave nothing behind.
        self.socket_root = Path(tempfile.gettempdir()) / "roomhub-be-unstarted"
        self.launcher = Launcher(context.runtimes["process"], self.engine, self.socket_root, context.hub_id,
                                 config.limits, config.ready_timeout, context.program_tokens)
        server = context.config.server
        host = server.host if server.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        self.launcher.hub_url = f"http://{host}:{server.port}"
        limits = server.limits
        self.partitions = Partitions(self.launcher, context.bus, config.grace_period, config.idle_timeout,
                                     limits.max_rooms_per_namespace, limits.max_clients_per_room)
        self.partition_socket = PartitionSocket(context, self.partitions)
        self.installer = Installer(self.catalog, self.builder, self.launcher, self.partitions)
        self.proxy = BackendProxy(self.partitions, self._on_demand if config.on_demand else None,
                                  limits.max_frame_bytes, self.note_server)
        self.proxy.metrics = self.builder.metrics = self.launcher.metrics = context.metrics
        # In a cluster a partition's instances run on the hub holding it (see .hubs).
        self.hubs = PartitionHubs(context.relay, self.partitions) if context.relay is not None else None
        self.proxy.hubs = self.hubs
        self._cleanup: asyncio.Task[None] | None = None
        self._server_known = False

    def note_server(self, scope: Scope) -> None:
        """Learn the hub's address from a request (the configured port may be 0)."""
        server = scope.get("server")
        if self._server_known or not server or not server[1]:
            return
        self._server_known = True
        if server and server[1]:
            host = server[0] if server[0] not in ("0.0.0.0", "::") else "127.0.0.1"
            self.launcher.hub_url = f"http://{host}:{server[1]}"

    async def install(self, queries: list[str] | dict[str, Any], partition: str = protocol.DEFAULT_PARTITION,
                      owner: str | None = None, install_id: str | None = None) -> dict[str, Any]:
        """Install W3Nest-style ``queries`` into ``partition``; see :class:`.install.Installer`."""
        request = protocol.parse_install(queries)
        return await self.installer.install(request, request.partition or partition, owner,
                                            install_id or f"install-{uuid.uuid4().hex[:12]}")

    async def _on_demand(self, partition: str, name: str, rng: str) -> Instance:
        request = protocol.InstallRequest([protocol.Query(name, rng)])
        await self.installer.install(request, partition, None, f"on-demand-{uuid.uuid4().hex[:8]}")
        inst = self.partitions.find(partition, name, rng)
        if inst is None:  # stopped again in the meantime
            raise protocol.BadRequest("backend-not-running", f"{name}#{rng} stopped while starting",
                                      status=503)
        return inst

    def routes(self) -> list[BaseRoute]:
        return backend_routes(self)

    def socket_endpoints(self) -> list[SocketEndpoint]:
        """The partition socket (see :mod:`.endpoint`)."""
        return [self.partition_socket]

    def shortcuts(self) -> list[Shortcut]:
        """The proxy's WebSockets, served ahead of the router (its HTTP requests are the hub's HTTP
        protocol's, :meth:`direct_http_routes`; any that reach ASGI get 501)."""
        return [Shortcut("/backends", self.proxy)]

    def direct_http_routes(self) -> list[DirectRoute]:
        """The proxy's HTTP requests, served without ASGI (:mod:`.exchange`)."""
        return [self.proxy.direct_route()]

    async def start(self) -> None:
        # Short and private: Unix socket paths are limited to about 100 bytes.
        self.socket_root = self.launcher.socket_root = Path(tempfile.mkdtemp(prefix="roomhub-be-"))
        self.partitions.start_reaper()
        self._cleanup = asyncio.create_task(self.engine.cleanup())

    async def stop(self) -> None:
        if self._cleanup is not None and not self._cleanup.done():
            self._cleanup.cancel()
        try:
            await self.partitions.close(self.context.config.server.shutdown_timeout)
        finally:
            if self.hubs is not None:
                await self.hubs.close()
            with contextlib.suppress(Exception):
                await self.engine.close()
            shutil.rmtree(self.socket_root, ignore_errors=True)

    def registries(self) -> list[RoomRegistry[Any]]:
        return [self.partitions.registry, self.partitions.monitor]

    def overview(self) -> dict[str, Any]:
        """The base rooms, and every partition with its instances."""
        return {**super().overview(),
                "partitions": [self.partitions.describe(name) for name in self.partitions.names()]}

    async def ready(self) -> list[str]:
        """Docker-built backends need the engine: not ready while it does not answer."""
        kinds = {pkg.manifest.build.kind for versions in self.catalog.scan().values()
                 for pkg in versions.values()}
        if "docker" not in kinds:
            return []
        try:
            await asyncio.wait_for(self.engine.check(), 5.0)
        except Exception as exc:
            return [f"backends: the Docker engine is not usable: {exc}"]
        return []


__all__ = ["BackendsFace", "Catalog", "Instance", "Partitions"]
