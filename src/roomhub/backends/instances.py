"""Instances: a built backend started for one partition, and the launcher that runs them.

An instance listens where only the hub reaches it:

- ``listen = "unix"`` (the default): a Unix socket ``backend.sock`` in a
  private directory (mode 0700) made for the instance; a container gets
  that directory bind-mounted at ``/run/roomhub`` and no network;
- ``listen = "port"`` (venv only): a free port on 127.0.0.1, never on
  another interface.

The backend is told where it lives through its environment:
``ROOMHUB_SOCKET`` or ``ROOMHUB_HOST``/``ROOMHUB_PORT`` (where to listen),
``ROOMHUB_BASE_PATH`` (``/backends/<name>/<version>``, its root path behind
the proxy, so FastAPI's ``/docs`` works there), ``ROOMHUB_PARTITION``,
``ROOMHUB_URL`` (the hub, to call other backends through the proxy with
``X-Backends-Partition``), ``ROOMHUB_TOKEN`` when the hub asks for tokens (a
random token of this instance, accepted by the hub while it runs; send it as
``Authorization: Bearer``) and W3Nest's ``HOST_NAME``/``HOST_PORT``.

Readiness: ``GET /`` until it answers 200, within the start timeout
(seconds). A process that exits first is a crash (:class:`StartFailed`
``start-crashed``, 502); no 200 in time is ``start-timeout`` (504); in both
cases the instance is stopped before the error is raised. Output lines are
kept (the last ``log_lines``) and handed to ``on_line``; an exit after
readiness is reported through ``on_exit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import aiohttp

from ..core.config import ResourceLimits
from ..runtimes.base import ProgramHandle, ProgramSpec, Runtime, RuntimeUnavailable, exit_description
from . import protocol as p
from .builds import Build
from .containers import CONTAINER_SOCKET_DIR, DockerEngine
from .packages import Package
from .upstream import UpstreamPool

if TYPE_CHECKING:
    from ..core.metrics import HubMetrics

log = logging.getLogger("roomhub.backends.instances")

Status = Literal["starting", "listening", "failed", "crashed", "stopping", "stopped"]
SOCKET_NAME = "backend.sock"


class StartFailed(p.BadRequest):
    """A start that did not reach ``listening`` (``start-crashed`` 502, ``start-timeout`` 504, ...)."""

    status = 502


def upstream_session(inst: Instance) -> aiohttp.ClientSession:
    """The instance's HTTP client: its Unix socket or loopback port, no connection limit, bodies
    passed as they are (no decompression), no total timeout (streams may be long), 10 s to connect.

    aiohttp rather than httpx: with 50 concurrent requests on one keep-alive pool httpx managed
    about 300 requests/s to a backend that answers 9,000/s directly; aiohttp about 8,000/s.
    """
    connector = (aiohttp.UnixConnector(path=str(inst.socket_path), limit=0) if inst.socket_path
                 else aiohttp.TCPConnector(limit=0))
    return aiohttp.ClientSession(
        connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent", "Accept-Encoding"),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10.0), cookie_jar=aiohttp.DummyCookieJar(),
    )


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(eq=False)
class Instance:
    """One running (or finished) backend in a partition."""

    uid: str
    partition: str
    package: Package
    build: Build
    owner: str | None
    directory: Path
    install_id: str | None = None
    alias: str | None = None
    status: Status = "starting"
    port: int | None = None
    started_at: float = field(default_factory=time.time)
    ready_at: float | None = None
    last_used: float = field(default_factory=time.monotonic)
    exit_code: int | None = None
    logs: deque[str] = field(default_factory=lambda: deque(maxlen=2000))
    handle: ProgramHandle | None = None
    client: aiohttp.ClientSession | None = None  # the readiness probe's
    upstream: UpstreamPool | None = None  # the proxy's keep-alive connections
    token: str | None = None  # its ROOMHUB_TOKEN, accepted by the hub while it runs
    dependencies: list[str] = field(default_factory=list)
    stop_reason: str | None = None
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.package.name

    @property
    def version(self) -> str:
        return self.package.version

    @property
    def api_key(self) -> str:
        return p.api_key(self.version)

    @property
    def base_path(self) -> str:
        return f"/backends/{self.name}/{self.version}"

    @property
    def socket_path(self) -> Path | None:
        return None if self.port else self.directory / SOCKET_NAME

    @property
    def origin(self) -> str:
        """The URL origin requests to the instance use (the Unix socket needs no real host)."""
        return f"http://127.0.0.1:{self.port}" if self.port else "http://backend"

    @property
    def alive(self) -> bool:
        return self.status in ("starting", "listening")

    def describe(self) -> dict[str, Any]:
        """The REST/dashboard view of the instance."""
        return {
            "uid": self.uid, "partitionId": self.partition, "name": self.name, "version": self.version,
            "alias": self.alias, "status": self.status, "owner": self.owner, "urlBase": self.base_path,
            "kind": self.build.kind, "fingerprint": self.build.fingerprint,
            "config": {"build": self.build.options, "dockerfile": self.build.dockerfile},
            "listen": f"127.0.0.1:{self.port}" if self.port else "unix socket",
            "startedAt": self.started_at, "readyAt": self.ready_at, "exitCode": self.exit_code,
            "stopReason": self.stop_reason, "dependencies": self.dependencies,
            "idleSeconds": round(time.monotonic() - self.last_used, 1),
        }


class Launcher:
    """Starts and stops instances with the ``process`` runtime (venv) or Docker (image).

    ``socket_root``: a short private directory for the instances' socket
    directories (Unix socket paths are limited to about 100 bytes).
    ``limits``: resource limits of venv backends.
    """

    def __init__(self, process: Runtime, engine: DockerEngine, socket_root: Path, hub_id: str,
                 limits: ResourceLimits, ready_timeout: float, tokens: set[str] | None = None) -> None:
        self.process = process
        self.engine = engine
        self.socket_root = socket_root
        self.hub_id = hub_id
        self.limits = limits
        self.ready_timeout = ready_timeout
        self.tokens = tokens  # the hub's live program tokens (None: the hub asks for no token)
        self.metrics: HubMetrics | None = None  # the hub's: start durations by outcome
        self.hub_url = "http://127.0.0.1:8000"

    def new_instance(self, partition: str, package: Package, build: Build, owner: str | None,
                     install_id: str | None, alias: str | None) -> Instance:
        uid = uuid.uuid4().hex
        directory = self.socket_root / uid[:12]
        directory.mkdir(mode=0o700, parents=True)
        return Instance(uid, partition, package, build, owner, directory, install_id, alias)

    def _environment(self, inst: Instance, socket_path: str | None) -> tuple[dict[str, str], dict[str, Any]]:
        hub_port = self.hub_url.rsplit(":", 1)[-1].strip("/")
        values: dict[str, Any] = {"options": inst.build.options,
            "python": str(inst.build.python or "python3"), "socket": socket_path or "",
            "port": str(inst.port or ""), "host": "127.0.0.1", "base_path": inst.base_path,
            "partition": inst.partition, "package_dir": str(inst.package.directory),
        }
        env = {
            "ROOMHUB_URL": self.hub_url, "ROOMHUB_BASE_PATH": inst.base_path,
            "ROOMHUB_PARTITION": inst.partition, "ROOMHUB_BACKEND_UID": inst.uid,
            "ROOMHUB_BACKEND_NAME": inst.name, "ROOMHUB_BACKEND_VERSION": inst.version,
            "HOST_NAME": "127.0.0.1", "HOST_PORT": hub_port, "PYTHONUNBUFFERED": "1",
        }
        if self.tokens is not None:
            inst.token = inst.token or secrets.token_urlsafe(32)
            env["ROOMHUB_TOKEN"] = inst.token
            self.tokens.add(inst.token)
        if socket_path:
            env["ROOMHUB_SOCKET"] = socket_path
        else:
            env.update({"ROOMHUB_HOST": "127.0.0.1", "ROOMHUB_PORT": str(inst.port)})
        try:
            env.update({k: v.format(**values) for k, v in inst.package.manifest.start.env.items()})
            return env, values
        except (KeyError, IndexError, ValueError) as exc:
            raise StartFailed("bad-manifest", f"{inst.name}: start.env has an unknown placeholder {exc}",
                              status=500) from None

    def _argv(self, inst: Instance, values: dict[str, Any]) -> list[str]:
        try:
            return [arg.format(**values) for arg in inst.package.manifest.start.command]
        except (KeyError, IndexError, ValueError) as exc:
            raise StartFailed("bad-manifest", f"{inst.name}: start.command has an unknown placeholder {exc}",
                              status=500) from None

    async def _spawn(self, inst: Instance) -> ProgramHandle:
        start = inst.package.manifest.start
        if inst.build.kind == "docker":
            if start.listen != "unix":
                raise StartFailed("bad-manifest", f"{inst.name}: a docker backend listens on a Unix socket",
                                  status=500)
            env, values = self._environment(inst, f"{CONTAINER_SOCKET_DIR}/{SOCKET_NAME}")
            values["python"] = "python3"
            os.chmod(inst.directory, 0o777)  # the container's user may differ from the hub's
            assert inst.build.image is not None
            return await self.engine.run(
                inst.build.image, self._argv(inst, values), env, inst.directory,
                {"roomhub.backend": inst.name, "roomhub.partition": inst.partition, "roomhub.uid": inst.uid},
                f"roomhub-backend-{inst.uid[:12]}",
            )
        if start.listen == "port":
            inst.port = free_loopback_port()
        env, values = self._environment(inst, str(inst.socket_path) if inst.socket_path else None)
        spec = ProgramSpec(argv=self._argv(inst, values), room_dir=inst.directory,
                           working_directory=str(inst.package.directory), env=env, limits=self.limits,
                           stdin=False, labels={"roomhub.backend": inst.name})
        return await self.process.start(spec)

    async def start(self, inst: Instance, on_line: Callable[[Instance, str], None],
                    on_exit: Callable[[Instance], None], timeout: float | None = None) -> None:
        """Start ``inst`` and wait until ``GET /`` answers 200 (``timeout`` seconds, default the
        manifest's ``start.ready_timeout`` or the launcher's). Raises :class:`StartFailed`."""
        started = time.monotonic()
        try:
            await self._start(inst, on_line, on_exit, timeout)
        except BaseException:
            if self.metrics is not None:
                self.metrics.backend_starts.labels("failed").observe(time.monotonic() - started)
            raise
        if self.metrics is not None:
            self.metrics.backend_starts.labels("ok").observe(time.monotonic() - started)

    async def _start(self, inst: Instance, on_line: Callable[[Instance, str], None],
                     on_exit: Callable[[Instance], None], timeout: float | None) -> None:
        timeout = timeout or inst.package.manifest.start.ready_timeout or self.ready_timeout
        try:
            inst.handle = await self._spawn(inst)
        except (RuntimeUnavailable, OSError) as exc:
            inst.status = "failed"
            await self._cleanup(inst)
            raise StartFailed("start-failed", f"{inst.name} {inst.version} could not start: {exc}",
                              uid=inst.uid, name=inst.name, version=inst.version) from None
        inst.client = upstream_session(inst)
        inst.upstream = UpstreamPool(inst.socket_path, inst.port, f"{inst.name}-{inst.uid[:8]}")
        inst._tasks.append(asyncio.create_task(self._pump(inst, on_line)))
        inst._tasks.append(asyncio.create_task(self._watch(inst, on_exit)))
        try:
            await self._ready(inst, timeout)
        except StartFailed:
            inst.status = "failed"
            await self.stop(inst, "start failed")
            inst.status = "failed"
            raise
        inst.status = "listening"
        inst.ready_at = time.time()

    async def _ready(self, inst: Instance, timeout: float) -> None:
        assert inst.client is not None and inst.handle is not None
        deadline = time.monotonic() + timeout
        delay = 0.02
        exited = inst._tasks[1]
        while True:
            if exited.done() or inst.exit_code is not None:
                await asyncio.sleep(0.1)  # let the last output lines arrive
                raise StartFailed(
                    "start-crashed",
                    f"{inst.name} {inst.version} exited before it was ready "
                    f"({exit_description(inst.exit_code if inst.exit_code is not None else -1)})",
                    uid=inst.uid, name=inst.name, version=inst.version, exitCode=inst.exit_code,
                    log=list(inst.logs)[-40:],
                )
            try:
                wait = aiohttp.ClientTimeout(total=min(5.0, max(0.5, deadline - time.monotonic())))
                async with inst.client.get(inst.origin + "/", timeout=wait) as response:
                    await response.read()
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            if time.monotonic() >= deadline:
                raise StartFailed(
                    "start-timeout", f"{inst.name} {inst.version} did not answer GET / with 200 "
                    f"within {timeout:g} s", status=504, uid=inst.uid, name=inst.name, version=inst.version,
                    log=list(inst.logs)[-40:],
                )
            await asyncio.wait({exited}, timeout=delay)
            delay = min(delay * 2, 0.05)  # a missed readiness costs at most 50 ms

    async def _pump(self, inst: Instance, on_line: Callable[[Instance, str], None]) -> None:
        assert inst.handle is not None
        pending = b""
        with contextlib.suppress(Exception):
            async for _, chunk in inst.handle.output():
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    self._line(inst, raw, on_line)
        if pending:
            self._line(inst, pending, on_line)

    @staticmethod
    def _line(inst: Instance, raw: bytes, on_line: Callable[[Instance, str], None]) -> None:
        text = raw.decode(errors="replace").rstrip("\r")
        inst.logs.append(text)
        on_line(inst, text)

    async def _watch(self, inst: Instance, on_exit: Callable[[Instance], None]) -> None:
        assert inst.handle is not None
        code = await inst.handle.wait()
        inst.exit_code = code
        if inst.status == "listening":
            inst.status = "crashed"
            inst.stop_reason = f"exited unexpectedly ({exit_description(code)})"
            log.warning("backend %s %s in %s %s", inst.name, inst.version, inst.partition, inst.stop_reason)
            on_exit(inst)
            await self._cleanup(inst)

    async def stop(self, inst: Instance, reason: str, grace: float = 3.0) -> None:
        """Stop ``inst`` (SIGTERM, then SIGKILL after ``grace`` s) and release its socket and client."""
        if inst.status in ("starting", "listening"):
            inst.status = "stopping"
        inst.stop_reason = inst.stop_reason or reason
        if inst.handle is not None:
            try:
                code = await inst.handle.kill(grace)
                inst.exit_code = code if inst.exit_code is None else inst.exit_code
            except Exception:
                log.exception("stopping backend %s failed", inst.uid)
        for task in inst._tasks:
            if not task.done():
                with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                    await asyncio.wait_for(asyncio.shield(task), 3.0)
                task.cancel()
        if inst.status == "stopping":
            inst.status = "stopped"
        await self._cleanup(inst)

    async def _cleanup(self, inst: Instance) -> None:
        if inst.token is not None and self.tokens is not None:
            self.tokens.discard(inst.token)  # the hub no longer accepts it
        if inst.upstream is not None:
            inst.upstream.close()
        if inst.client is not None:
            with contextlib.suppress(Exception):
                await inst.client.close()
        shutil.rmtree(inst.directory, ignore_errors=True)
