"""The hub: owns the configuration, the bus, the runtimes and the faces; starts and stops them.

Start-up refuses unsafe or unusable set-ups with :class:`HubError` (a
non-loopback bind with the ``process`` runtime, an unusable runtime) before
the first request; shutdown tears every room down (epilogues included) and
ends every program within ``server.shutdown_timeout`` seconds, and says so
in the log.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from .bus import LocalBus
from .callback_websocket import CallbackSockets
from .config import HubConfig
from .faces import Face
from .runtimes import Runtime, RuntimeUnavailable, make_runtimes
from .security import Door

log = logging.getLogger("roomhub.hub")


class HubError(Exception):
    """The hub cannot start as configured; the message says why and what to change."""


class ConnectionLimiter:
    """Counts open WebSocket connections against ``limits.max_connections``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    def try_acquire(self) -> bool:
        if self.count >= self.limit:
            return False
        self.count += 1
        return True

    def release(self) -> None:
        self.count = max(0, self.count - 1)


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Hub:
    """The server's state. Build it from a :class:`HubConfig`, then ``await start()`` / ``stop()``."""

    def __init__(self, config: HubConfig) -> None:
        self.config = config
        assert config.server.data_dir is not None
        self.data_dir: Path = config.server.data_dir
        self.id = self._hub_id()
        self.bus = LocalBus()
        self.connections = ConnectionLimiter(config.server.limits.max_connections)
        self.runtimes: dict[str, Runtime] = make_runtimes(config.runtime, self.id)
        self.started_at = time.time()
        server, limits = config.server, config.server.limits
        # Tokens of the programs the hub started and that may call it (backend instances), valid
        # while they run; None when the hub asks for no token.
        self.program_tokens: set[str] | None = set() if server.auth.enabled else None
        live = self.program_tokens if self.program_tokens is not None else ()
        self.door = Door(server.auth, server.allowed_origins, live)
        self.faces: list[Face] = self._make_faces()
        # WebSocket endpoints the hub's HTTP protocol serves without ASGI (see callback_websocket)
        self.sockets = CallbackSockets(
            self.door, max_size=limits.max_frame_bytes,
            max_buffer_bytes=limits.send_buffer_bytes, ping_interval=server.ping_interval,
            receive_rate=limits.receive_rate, receive_burst=limits.receive_burst,
            receive_throttled_close=limits.receive_throttled_close,
        )
        self.sockets.add(e for face in self.faces for e in face.socket_endpoints())

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

    def _make_faces(self) -> list[Face]:
        from .pages import PagesFace

        faces: list[Face] = [PagesFace(self)]
        if self.config.widgets is not None:
            from .widgets import WidgetsFace

            faces.append(WidgetsFace(self))
        if self.config.backends is not None:
            from .backends import BackendsFace

            faces.append(BackendsFace(self))
        if self.config.actions is not None:
            from .actions import ActionsFace

            faces.append(ActionsFace(self))
        if self.config.documents is not None:
            from .documents import DocumentsFace

            faces.append(DocumentsFace(self))
        return faces

    def face(self, name: str) -> Any:
        return next((f for f in self.faces if f.name == name), None)

    def runtimes_in_use(self) -> set[str]:
        used = {self.config.runtime.default} if self.config.pages else set()
        for page in self.config.pages.values():
            for executor in page.executors.values():
                runtime = getattr(executor, "runtime", None)
                if runtime:
                    used.add(runtime)
        return used

    def check_bind(self) -> None:
        """Refuse a non-loopback bind with the ``process`` runtime unless explicitly allowed."""
        server = self.config.server
        unsandboxed = "process" in self.runtimes_in_use()
        if unsandboxed and not is_loopback(server.host) and not server.allow_non_loopback:
            raise HubError(
                f"refusing to bind to {server.host}: the 'process' runtime runs programs unsandboxed "
                "as the hub's user. Use runtime 'bubblewrap' or 'docker', bind to 127.0.0.1, or set "
                "server.allow_non_loopback = true (--allow-non-loopback) if you accept the risk."
            )

    async def start(self) -> None:
        """Check the runtimes in use, clean what a crashed run left, start the faces."""
        self.check_bind()
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
        for face in self.faces:
            await face.start()
        self.sockets.start()
        log.info("hub %s started: faces %s, data in %s", self.id,
                 ", ".join(f.name for f in self.faces), self.data_dir)

    async def stop(self) -> None:
        """Stop every face (rooms torn down, epilogues run), then the runtimes; bounded in time."""
        started = time.perf_counter()
        rooms = sum(len(r.rooms) for f in self.faces for r in f.registries())
        log.info("shutting down: %d rooms to tear down", rooms)
        timeout = self.config.server.shutdown_timeout
        for face in reversed(self.faces):
            try:
                await asyncio.wait_for(face.stop(), timeout)
            except TimeoutError:
                log.error("face %s did not stop within %.0f s", face.name, timeout)
            except Exception:
                log.exception("face %s failed to stop", face.name)
        await self.sockets.stop()  # what no face closed (handshakes, joins in progress)
        for runtime in self.runtimes.values():
            try:
                await runtime.close()
            except Exception:
                log.exception("runtime %s failed to close", runtime.name)
        log.info("shutdown complete in %.2f s: %d rooms torn down, no program left running",
                 time.perf_counter() - started, rooms)
