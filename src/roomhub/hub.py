"""The hub: owns the configuration, the bus, the runtimes and the faces it is given; starts and
stops them. It builds one :class:`~roomhub.core.context.FaceContext` and passes it to each face:
faces never see the hub. Which faces a configuration enables is :func:`configured_faces`.

Start-up refuses unsafe or unusable set-ups with :class:`HubError` (a
non-loopback bind while code would run unsandboxed, a data directory another
running hub holds, an unusable runtime) before the first request, and
removes what a dead run left only once it holds the data directory's lock
(:mod:`roomhub.datadir`); shutdown tears every room down (epilogues
included) and ends every program within ``server.shutdown_timeout``
seconds, and says so in the log.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .config import HubConfig
from .core.bus import LocalBus
from .core.context import ConnectionLimiter, FaceContext
from .core.errors import HubError
from .core.face import Face
from .core.metrics import HubMetrics
from .core.relay import RoomRelay
from .datadir import DataDirInUse, DataDirLock
from .runtimes import Runtime, RuntimeUnavailable, make_runtimes
from .transport.callback_websocket import CallbackSockets
from .transport.security import PUBLIC_PATHS, Door, is_loopback_name

log = logging.getLogger("roomhub.hub")


FaceFactory = Callable[[FaceContext], Face]
"""What the hub composes: a face class (or any callable) taking the context."""


def configured_faces(config: HubConfig) -> list[FaceFactory]:
    """The faces ``config`` enables, in start-up order: pages always, then widgets, backends,
    actions and documents when their section is present. A face is imported only when used."""
    from .pages import PagesFace

    faces: list[FaceFactory] = [PagesFace]
    if config.widgets is not None:
        from .widgets import WidgetsFace

        faces.append(WidgetsFace)
    if config.backends is not None:
        from .backends import BackendsFace

        faces.append(BackendsFace)
    if config.actions is not None:
        from .actions import ActionsFace

        faces.append(ActionsFace)
    if config.documents is not None:
        from .documents import DocumentsFace

        faces.append(DocumentsFace)
    return faces


class Hub:
    """The server's state. Build it from a :class:`HubConfig`, then ``await start()`` / ``stop()``.

    ``faces``: what to compose, each called with the hub's :class:`FaceContext` (default: the
    faces the configuration enables, :func:`configured_faces`). ``lock``: the data directory's
    lock, when the caller took it already (``roomhub serve`` does, before anything else);
    otherwise :meth:`start` takes it. Raises :class:`HubError` when a face cannot be built.
    """

    def __init__(self, config: HubConfig, lock: DataDirLock | None = None,
                 faces: Sequence[FaceFactory] | None = None) -> None:
        self.config = config
        assert config.server.data_dir is not None
        self.data_dir: Path = config.server.data_dir
        self.lock = lock
        self.id = self._hub_id()
        self.bus = LocalBus()
        self.connections = ConnectionLimiter(config.server.limits.max_connections)
        self.runtimes: dict[str, Runtime] = make_runtimes(config.runtime, self.id)
        self.started_at = time.time()
        self.metrics = HubMetrics(self.id)
        self._sampler: asyncio.Task[None] | None = None
        server, limits = config.server, config.server.limits
        # Tokens of the programs the hub started and that may call it (backend instances), valid
        # while they run; None when the hub asks for no token.
        self.program_tokens: set[str] | None = set() if server.auth.enabled else None
        live = self.program_tokens if self.program_tokens is not None else ()
        # The actions file server answers CORS itself: its allowed origins may also write there.
        files = config.actions.files if config.actions is not None else None
        cors_paths = {files.prefix: files.allowed_origins} if files is not None and files.enabled else None
        self.door = Door(server.auth, server.allowed_origins, live, allowed_hosts=server.allowed_hosts,
                         server_host=server.host, cors_paths=cors_paths,
                         public_paths=(*PUBLIC_PATHS, *(["/metrics"] if server.metrics_public else [])))
        cluster = self._cluster()
        # In a cluster, each room socket is served by the hub holding its room's lease, the
        # others relaying to it (core/relay.py); alone, nothing of it exists.
        self.relay = RoomRelay(cluster) if cluster is not None else None
        if self.relay is not None:  # the relaying hub checked the client's token
            self.door.relayed = self.relay.authenticated
        self.context = FaceContext(
            config=config, bus=self.bus, data_dir=self.data_dir, hub_id=self.id,
            runtimes=self.runtimes, connections=self.connections, door=self.door,
            program_tokens=self.program_tokens, metrics=self.metrics, cluster=cluster,
            relay=self.relay,
        )
        factories = configured_faces(config) if faces is None else faces
        self.faces: list[Face] = [make(self.context) for make in factories]
        # WebSocket endpoints the hub's HTTP protocol serves without ASGI (see callback_websocket)
        self.sockets = CallbackSockets(
            self.door, max_size=limits.max_frame_bytes,
            send_limits=limits, ping_interval=server.ping_interval,
            receive_rate=limits.receive_rate, receive_burst=limits.receive_burst,
            receive_throttled_close=limits.receive_throttled_close,
            room_receive_rate=limits.room_receive_rate, room_receive_burst=limits.room_receive_burst,
        )
        # Metrics once for every face: its registries' rooms and its sockets' traffic.
        for face in self.faces:
            self.metrics.traffic(face.name)  # every face's series from the first scrape
            for registry in face.registries():
                self.metrics.watch(face.name, registry)
            for endpoint in face.socket_endpoints():
                endpoint.traffic = self.metrics.traffic(face.name)
        self.sockets.add(e for face in self.faces for e in face.socket_endpoints())
        self.cluster = self.context.cluster

    def _cluster(self) -> Any:
        """This hub's part in ``[cluster]`` (a :class:`roomhub.cluster.Cluster`), None without it.
        Imported only when configured: it needs the ``cluster`` extra."""
        if self.config.cluster is None:
            return None
        from .cluster import Cluster, advertised

        server = self.config.server
        return Cluster(
            self.config.cluster, self.id,
            advertise=lambda: advertised(server.host, server.port),  # the real port by start time
            load=lambda: {
                "rooms": sum(len(r.rooms) for f in self.faces for r in f.registries()),
                "connections": self.connections.count,
                "relayed": self.relay.relayed if self.relay is not None else 0,  # to other hubs, now
            },
            rooms=self.room_summaries,
        )

    def room_summaries(self) -> list[dict[str, Any]]:
        """Every live room of every face, in brief (namespace, name, clients, created_at): what
        the cluster's heartbeat publishes for the other hubs' ``GET /api/rooms``. The faces' own
        details (executors, document size) stay local: they may cost more than a heartbeat should."""
        return [
            {"namespace": room.namespace, "name": room.name, "clients": len(room.members),
             "created_at": room.created_at}
            for face in self.faces for registry in face.registries()
            for room in list(registry.rooms.values())
        ]

    def _hub_id(self) -> str:
        """A stable id (kept in the data directory) so that a restarted hub recognises its leftovers."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.data_dir / "hub-id"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            hub_id = uuid.uuid4().hex[:12]
            path.write_text(hub_id + "\n")
            return hub_id

    def face(self, name: str) -> Any:
        """The face called ``name`` (``"pages"``, ``"documents"``...), or None."""
        return next((f for f in self.faces if f.name == name), None)

    async def close_room(self, namespace: str, name: str) -> Face | None:
        """Close every client of room ``name`` in the registry ``namespace`` (compared without
        surrounding slashes) and tear it down now; the face it belonged to, or None if absent."""
        for face in self.faces:
            for registry in face.registries():
                if registry.namespace.strip("/") == namespace.strip("/") and await registry.drop(name):
                    return face
        return None

    async def ready(self) -> list[str]:
        """Why the hub cannot serve now (``/api/ready``): each runtime in use that fails its check,
        each face's :meth:`~roomhub.core.face.Face.ready` reasons; ``[]`` when ready. Each check
        is bounded (5 s)."""
        reasons: list[str] = []
        for name in sorted(self.runtimes_in_use()):
            try:
                await asyncio.wait_for(self.runtimes[name].check(), 5.0)
            except (RuntimeUnavailable, TimeoutError, OSError) as exc:
                reasons.append(f"runtime {name!r} is not usable: {exc or 'no answer within 5 s'}")
        for face in self.faces:
            try:
                reasons += await asyncio.wait_for(face.ready(), 5.0)
            except Exception as exc:
                reasons.append(f"{face.name}: readiness check failed: {exc!r}")
        return reasons

    def runtimes_in_use(self) -> set[str]:
        used = {self.config.runtime.default} if self.config.pages else set()
        for page in self.config.pages.values():
            for executor in page.executors.values():
                runtime = getattr(executor, "runtime", None)
                if runtime:
                    used.add(runtime)
        return used

    def unsandboxed(self) -> list[str]:
        """What would run code outside any sandbox, as the hub's user, each with what uses it:
        pages' programs in the ``process`` runtime, and backends built as virtual environments
        (started as plain processes; the shipped ``pyrun_backend`` runs any Python it is sent).
        Backends built as Docker images, bubblewrap and docker pages are sandboxed. The actions
        and widgets faces run the operator's own Python in the hub's process: they run no code
        a client chose, so they are not listed."""
        found = []
        if "process" in self.runtimes_in_use():
            default = self.config.runtime.default
            pages = sorted(
                path for path, page in self.config.pages.items()
                if any(getattr(e, "command", None) is not None
                       and (getattr(e, "runtime", None) or default) == "process"
                       for e in page.executors.values())
            )
            users = f"pages {', '.join(pages)}" if pages else "runtime.default"
            found.append(f"the 'process' runtime ({users})")
        backends = self.face("backends")
        if backends is not None:
            venvs = sorted(name for name, versions in backends.catalog.scan().items()
                           if any(pkg.manifest.build.kind == "venv" for pkg in versions.values()))
            if venvs:
                found.append(f"backends built as virtual environments ({', '.join(venvs)})")
        return found

    def check_bind(self) -> None:
        """Refuse a non-loopback bind while anything runs unsandboxed (:meth:`unsandboxed`), unless
        ``server.allow_non_loopback``; raises :class:`HubError` naming what is unsandboxed."""
        server = self.config.server
        if is_loopback_name(server.host.lower().strip("[]")) or server.allow_non_loopback:
            return
        unsandboxed = self.unsandboxed()
        if unsandboxed:
            raise HubError(
                f"refusing to bind to {server.host}: {'; '.join(unsandboxed)} would run code "
                "unsandboxed as the hub's user. Use runtime 'bubblewrap' or 'docker' (and backends "
                "built as Docker images), bind to 127.0.0.1, or set server.allow_non_loopback = true "
                "(--allow-non-loopback) if you accept the risk."
            )

    def _lock_data_dir(self) -> None:
        """Take the data directory's lock unless held. Raises :class:`HubError` naming the hub
        (pid, host:port) that holds it."""
        if self.lock is not None and self.lock.held:
            return
        server = self.config.server
        try:
            self.lock = DataDirLock.acquire(self.data_dir, server.host, server.port)
        except DataDirInUse as exc:
            raise HubError(str(exc)) from None
        except OSError as exc:
            raise HubError(f"cannot lock the data directory {self.data_dir}: {exc}") from None

    async def start(self) -> None:
        """Lock the data directory, check the runtimes in use, clean what a dead run left, start
        the faces. Raises :class:`HubError` (the lock released again)."""
        self.check_bind()
        self._lock_data_dir()
        try:
            await self._start()
        except BaseException:
            if self.relay is not None:
                await self.relay.stop()
            if self.cluster is not None:
                await self.cluster.stop()  # joined already: leave, do not beat on for a hub that failed
            self._unlock()
            raise

    async def _start(self) -> None:
        # Only now, with the lock held, is whatever carries this hub's id a dead run's leftover.
        for name in sorted(self.runtimes_in_use()):
            runtime = self.runtimes[name]
            try:
                await runtime.check()
            except RuntimeUnavailable as exc:
                raise HubError(f"runtime {name!r} is not usable: {exc}") from None
            await runtime.cleanup_orphans(self.id)
        stale = self.data_dir / "rooms"
        if stale.exists():
            log.info("removing room directories left by an earlier run in %s", stale)
            await asyncio.to_thread(shutil.rmtree, stale, True)
        if self.cluster is not None:
            from .cluster import ClusterUnavailable

            try:
                await self.cluster.start()
            except ClusterUnavailable as exc:
                raise HubError(str(exc)) from None
        if self.relay is not None:
            self.relay.start()
        for face in self.faces:
            await face.start()
        self.sockets.start()
        self._sampler = asyncio.create_task(self.metrics.run_sampler(), name="metrics-sampler")
        log.info("hub %s started: faces %s, data in %s", self.id,
                 ", ".join(f.name for f in self.faces), self.data_dir)

    async def stop(self) -> None:
        """Stop every face (rooms torn down, epilogues run), then the runtimes; bounded in time."""
        started = time.perf_counter()
        rooms = sum(len(r.rooms) for f in self.faces for r in f.registries())
        log.info("shutting down: %d rooms to tear down", rooms)
        if self._sampler is not None:
            self._sampler.cancel()
        timeout = self.config.server.shutdown_timeout
        for face in reversed(self.faces):
            try:
                await asyncio.wait_for(face.stop(), timeout)
            except TimeoutError:
                log.error("face %s did not stop within %.0f s", face.name, timeout)
            except Exception:
                log.exception("face %s failed to stop", face.name)
        await self.sockets.stop()  # what no face closed (handshakes, joins in progress)
        if self.relay is not None:
            await self.relay.stop()
        if self.cluster is not None:
            await self.cluster.stop()  # the leases released once nothing serves their rooms here
        for runtime in self.runtimes.values():
            try:
                await runtime.close()
            except Exception:
                log.exception("runtime %s failed to close", runtime.name)
        self._unlock()
        log.info("shutdown complete in %.2f s: %d rooms torn down, no program left running",
                 time.perf_counter() - started, rooms)

    def _unlock(self) -> None:
        if self.lock is not None:
            self.lock.release()
