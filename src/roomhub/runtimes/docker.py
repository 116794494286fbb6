"""The ``docker`` runtime: every program is a container on a Docker engine (through aiodocker).

Engine: ``runtime.docker.url`` (``unix:///var/run/docker.sock``,
``tcp://host:2375``), else ``DOCKER_HOST``, else the local socket.
:meth:`DockerRuntime.check` reaches it at start-up and raises
:class:`RuntimeUnavailable` if it cannot.

Each container gets: the executor's image (``runtime.docker.image`` if it
names none; never pulled unless ``runtime.docker.pull``), command, working
directory (inside the room mount), user, environment and TTY; memory with
swap equal to memory (no swap), a CPU quota (``limits.cpus``), a pids
limit, ``cpu``/``fsize`` ulimits, an optional read-only root, a private
``/tmp`` tmpfs of ``tmpfs_bytes`` and a ``/dev/shm`` of ``shm_bytes``, the
room quota (``limits.room_bytes``, :mod:`.quota`; bind-mounted rooms only),
every capability dropped, ``no-new-privileges``,
``docker-init`` as PID 1, and no network unless the executor names one
(``container.network``).

The room's directory is shared by the room's containers at
``runtime.docker.room_mount``: a bind mount of the hub's room directory when
the engine is local (so the hub's own file watching sees every write), or a
named volume when the engine is remote (``room_storage``), kept in step with
the hub's room directory by a monitor container (:mod:`.docker_mirror`). Volumes and
containers carry the labels ``roomhub.hub``, ``roomhub.room`` and
``roomhub.executor``; :meth:`DockerRuntime.cleanup_orphans` removes only
objects with this hub's label.

A container is attached before it starts (no early output is lost),
stopped with a grace period and then removed. A container killed by the
kernel for exceeding its memory limit ends its output with a notice
(``out of memory``) so that clients are told.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import Any

import aiodocker
import aiohttp
from aiodocker.containers import DockerContainer
from aiodocker.exceptions import DockerError
from aiodocker.stream import Stream as AttachStream
from aiodocker.volumes import DockerVolume
from yarl import URL

from ..core.config import DockerConfig
from .base import ProgramHandle, ProgramSpec, Runtime, RuntimeUnavailable, limit_notice
from .base import Stream as StreamName
from .docker_mirror import RoomMirror
from .quota import ROOM_QUOTAS

log = logging.getLogger("roomhub.runtimes.docker")

HUB_LABEL = "roomhub.hub"
ROOM_LABEL = "roomhub.room"
EXECUTOR_LABEL = "roomhub.executor"
OOM_NOTICE = "out of memory"
MiB = 1024 * 1024


def engine_url(config: DockerConfig) -> str | None:
    """The engine URL from the configuration or ``DOCKER_HOST`` (``None``: the local socket)."""
    return config.url or os.environ.get("DOCKER_HOST") or None


def open_engine(url: str | None) -> aiodocker.Docker:
    """An aiodocker client for ``url`` (None: the local socket); :class:`RuntimeUnavailable` if
    none can be made. Call it in the event loop that will use the client."""
    try:
        return aiodocker.Docker(url=url)
    except (ValueError, AssertionError) as exc:
        raise RuntimeUnavailable(f"no Docker engine configured or found: {exc}") from None


def is_local(url: str | None) -> bool:
    """Whether the engine shares the hub's file system (a Unix socket)."""
    return url is None or url.startswith(("unix://", "npipe://"))


def safe_name(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", text)[:limit].strip("-.") or "x"


async def image_exists(docker: aiodocker.Docker, image: str) -> bool:
    """Whether ``image`` is on the engine (other engine errors propagate as ``DockerError``)."""
    try:
        await docker.images.inspect(image)
    except DockerError as exc:
        if exc.status == 404:
            return False
        raise
    return True


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, DockerError):
        return str(exc.message).strip()
    return str(exc) or type(exc).__name__


class DockerHandle(ProgramHandle):
    """A running container: attached streams, resize, wait (then removal), stop with grace."""

    def __init__(
        self,
        runtime: DockerRuntime,
        container: DockerContainer,
        stream: AttachStream,
        spec: ProgramSpec,
    ) -> None:
        self.runtime = runtime
        self.container = container
        self.id = container.id
        self._stream = stream
        self._tty = spec.tty
        self._stdin = spec.stdin or spec.tty
        self._memory = spec.limits.memory_bytes
        self._queue: asyncio.Queue[tuple[StreamName, bytes] | None] = asyncio.Queue(maxsize=64)
        self._eof = asyncio.Event()
        self._reader = asyncio.create_task(self._read())
        self._exit = asyncio.create_task(self._finish())
        self.oom_killed = False
        self.exit_code: int | None = None

    async def _read(self) -> None:
        try:
            while (msg := await self._stream.read_out()) is not None:
                await self._queue.put(("stderr" if msg.stream == 2 else "stdout", msg.data))
        except (DockerError, aiohttp.ClientError, OSError, RuntimeError) as exc:
            log.debug("container %s: attach stream ended: %s", self.id[:12], exc)
        finally:
            self._eof.set()
            await self._queue.put(None)

    async def _finish(self) -> int:
        """Wait for the exit, note an OOM kill, let the output drain, remove the container."""
        try:
            result = await self.container.wait()
            code = int(result.get("StatusCode", -1))
            with contextlib.suppress(DockerError):
                info = await self.container.show()
                self.oom_killed = bool(info.get("State", {}).get("OOMKilled"))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._eof.wait(), 2.0)
        except DockerError as exc:
            log.warning("container %s: wait failed: %s", self.id[:12], describe_error(exc))
            code = -1
        finally:
            await self.runtime.remove_container(self.container)
            with contextlib.suppress(Exception):
                await self._stream.close()
        self.exit_code = code
        if self.oom_killed:
            log.info("container %s killed: out of memory (limit %s)", self.id[:12], self._memory)
            limit = f" ({self._memory // MiB} MiB)" if self._memory else ""
            self.limit_exceeded = f"{OOM_NOTICE}: a process exceeded the memory limit{limit} and was killed"
        return code

    async def output(self) -> AsyncIterator[tuple[StreamName, bytes]]:
        while (item := await self._queue.get()) is not None:
            yield item
        await asyncio.shield(self._exit)
        if self.limit_exceeded is not None:
            yield limit_notice(self.limit_exceeded, self._tty)

    async def write(self, data: bytes) -> None:
        if self._exit.done() or self._eof.is_set():
            raise BrokenPipeError("the container has exited")
        if not self._stdin:
            raise BrokenPipeError("the program has no stdin")
        try:
            await self._stream.write_in(data)
        except (RuntimeError, AssertionError, aiohttp.ClientError) as exc:
            raise BrokenPipeError(f"the container's stdin is closed: {exc!r}") from None

    async def resize(self, cols: int, rows: int) -> None:
        if self._tty and not self._exit.done():
            with contextlib.suppress(DockerError, aiohttp.ClientError):
                await self.container.resize(h=rows, w=cols)

    async def wait(self) -> int:
        return await asyncio.shield(self._exit)

    async def kill(self, grace: float = 2.0) -> int:
        """Stop (SIGTERM, then SIGKILL after ``grace`` seconds, rounded up) and remove."""
        if not self._exit.done():
            try:
                await self.container.stop(t=max(0, math.ceil(grace)))
            except DockerError as exc:
                if exc.status not in (304, 404):
                    log.warning("container %s: stop failed: %s", self.id[:12], describe_error(exc))
                    with contextlib.suppress(DockerError):
                        await self.container.kill()
        code = await asyncio.shield(self._exit)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._reader), 2.0)
        return code


class DockerRuntime(Runtime):
    """Containers on a Docker engine, labelled with the hub's id."""

    name = "docker"

    def __init__(self, config: DockerConfig, hub_id: str) -> None:
        self.config = config
        self.hub_id = hub_id
        self.url = engine_url(config)
        self.local = is_local(self.url)
        storage = config.room_storage
        self.use_volumes = storage == "volume" or (storage == "auto" and not self.local)
        self._docker: aiodocker.Docker | None = None
        self._handles: set[DockerHandle] = set()
        self._mirrors: dict[Path, RoomMirror] = {}

    # -- engine ----------------------------------------------------------------------------

    @property
    def docker(self) -> aiodocker.Docker:
        """The aiodocker client (created on first use, in the running loop)."""
        if self._docker is None:
            self._docker = open_engine(self.url)
        return self._docker

    def _where(self) -> str:
        return self.url or "the local socket"

    async def check(self) -> None:
        """Reach the engine within ``connect_timeout`` s; else raise :class:`RuntimeUnavailable`."""
        try:
            version = await asyncio.wait_for(self.docker.version(), self.config.connect_timeout)
        except (DockerError, aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            raise RuntimeUnavailable(
                f"cannot reach the Docker engine at {self._where()}: {describe_error(exc)}. "
                "Start it (e.g. `dockerd`, or scripts/setup-docker.sh) or set runtime.docker.url"
            ) from None
        log.info(
            "docker engine %s (API %s) at %s; room directories as %s",
            version.get("Version"),
            version.get("ApiVersion"),
            self._where(),
            "volumes" if self.use_volumes else "bind mounts",
        )
        if self.config.image and not await image_exists(self.docker, self.config.image):
            log.warning(
                "docker: the default image %r is not on the engine%s",
                self.config.image,
                "; it will be pulled on first use"
                if self.config.pull
                else " (roomhub does not pull unless runtime.docker.pull = true)",
            )

    # -- rooms -----------------------------------------------------------------------------

    def volume_name(self, room_dir: Path) -> str:
        """The named volume of a room (derived from the hub id and the room directory)."""
        digest = hashlib.sha256(str(room_dir.resolve()).encode()).hexdigest()[:20]
        return f"roomhub-{safe_name(self.hub_id, 24)}-{digest}"

    async def prepare_room(self, room_dir: Path, labels: dict[str, str]) -> None:
        """Create the room's labelled volume and its mirror (volume mode); nothing for bind mounts."""
        if not self.use_volumes:
            return
        await self.docker.volumes.create(
            {
                "Name": self.volume_name(room_dir),
                "Labels": {**labels, HUB_LABEL: self.hub_id},
            }
        )
        image = self.config.mirror_image or self.config.image
        if not self.config.mirror:
            return
        if not image:
            log.warning("docker: no mirror_image nor image configured: room files are not mirrored")
            return
        mirror = RoomMirror(self, room_dir, labels)
        await mirror.start(image)
        self._mirrors[room_dir] = mirror

    async def release_room(self, room_dir: Path, labels: dict[str, str]) -> None:
        """Remove the room's volume (retried briefly while containers are still being removed)."""
        if not self.use_volumes:
            return
        mirror = self._mirrors.pop(room_dir, None)
        if mirror is not None:
            await mirror.stop()
        volume = DockerVolume(self.docker, self.volume_name(room_dir))
        for attempt in range(20):
            try:
                await volume.delete()
                return
            except DockerError as exc:
                if exc.status == 404:
                    return
                if exc.status != 409 or attempt == 19:
                    raise
                await asyncio.sleep(0.1)

    # -- programs -------------------------------------------------------------------------

    def container_config(self, spec: ProgramSpec, image: str) -> dict[str, Any]:
        """The create-container body for ``spec`` (Engine API ``POST /containers/create``)."""
        mount = PurePosixPath(self.config.room_mount)
        workdir = str(mount / PurePosixPath(spec.working_directory))
        env = dict(spec.env)
        if spec.tty:
            env.setdefault("TERM", "xterm-256color")
        limits = spec.limits
        stdin = spec.stdin or spec.tty
        host: dict[str, Any] = {
            "NetworkMode": spec.container.network or "none",
            "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges"],
            "ReadonlyRootfs": spec.container.read_only_root,
            "Init": self.config.init,
        }
        if spec.tty:
            host["ConsoleSize"] = [spec.rows, spec.cols]  # honoured by engines with API >= 1.42
        if self.use_volumes:
            host["Mounts"] = [
                {"Type": "volume", "Source": self.volume_name(spec.room_dir), "Target": str(mount)}
            ]
        else:
            host["Mounts"] = [{"Type": "bind", "Source": str(spec.room_dir.resolve()), "Target": str(mount)}]
        # /tmp and /dev/shm are bounded tmpfs mounts (charged to the container's memory as well),
        # whatever the root: in the writable layer /tmp would grow without bound.
        host["Tmpfs"] = {"/tmp": f"rw,nosuid,nodev,size={self.config.tmpfs_bytes}"}
        host["ShmSize"] = self.config.shm_bytes
        if limits.memory_bytes:
            host["Memory"] = limits.memory_bytes
            host["MemorySwap"] = limits.memory_bytes  # memory + swap = memory: no swap
        if limits.cpus:
            host["NanoCpus"] = int(limits.cpus * 1e9)
        if limits.pids:
            host["PidsLimit"] = limits.pids
        ulimits = []
        if limits.cpu_seconds:
            ulimits.append({"Name": "cpu", "Soft": limits.cpu_seconds, "Hard": limits.cpu_seconds})
        if limits.file_size_bytes:
            ulimits.append({"Name": "fsize", "Soft": limits.file_size_bytes, "Hard": limits.file_size_bytes})
        if ulimits:
            host["Ulimits"] = ulimits
        return {
            "Image": image,
            "Cmd": list(spec.argv),
            "Env": [f"{k}={v}" for k, v in env.items()],
            "WorkingDir": workdir,
            "User": spec.container.user or "",
            "Tty": spec.tty,
            "OpenStdin": stdin,
            "StdinOnce": False,
            "AttachStdin": stdin,
            "AttachStdout": True,
            "AttachStderr": True,
            "NetworkDisabled": spec.container.network is None,
            "Labels": {**spec.labels, HUB_LABEL: self.hub_id},
            "HostConfig": host,
        }

    async def _create(self, config: dict[str, Any], name: str) -> DockerContainer:
        image = config["Image"]
        try:
            return await self.docker.containers.create(config, name=name)
        except DockerError as exc:
            if exc.status != 404 or "image" not in str(exc.message).lower():
                raise RuntimeUnavailable(
                    f"cannot create a container of {image!r}: {describe_error(exc)}"
                ) from None
            if not self.config.pull:
                raise RuntimeUnavailable(
                    f"image {image!r} not found on the Docker engine; build or pull it there "
                    "(roomhub never pulls unless runtime.docker.pull = true)"
                ) from None
        log.info("pulling image %r", image)
        try:
            await self.docker.images.pull(image)
            return await self.docker.containers.create(config, name=name)
        except DockerError as exc:
            raise RuntimeUnavailable(f"cannot pull image {image!r}: {describe_error(exc)}") from None

    def _attach(self, container: DockerContainer, stdin: bool, tty: bool) -> AttachStream:
        """An attach stream (the caller opens it before start); built here to skip an inspect."""
        query = {
            "logs": 0,
            "stream": 1,
            "stdin": int(stdin),
            "stdout": 1,
            "stderr": 1,
            "detachKeys": "",
        }

        async def setup() -> tuple[URL, bytes | None, bool]:
            return URL(f"containers/{container.id}/attach").with_query(query), None, tty

        return AttachStream(self.docker, setup)

    async def start(self, spec: ProgramSpec) -> ProgramHandle:
        """Create, attach, start (and size) a container for ``spec``.

        With a room mirror, the room's pending local changes reach the volume
        first. Raises :class:`RuntimeUnavailable` for a missing image (naming
        it), an unreachable engine or a container the engine refuses to start.
        """
        mirror = self._mirrors.get(spec.room_dir)
        if mirror is not None:
            await mirror.flush()
        handle = await self.launch(spec)
        # A volume lives in the engine: the hub's mirror of it is partial, so it cannot be measured.
        return handle if self.use_volumes else ROOM_QUOTAS.guard(handle, spec)

    async def launch(self, spec: ProgramSpec) -> DockerHandle:
        """:meth:`start` without the mirror's flush (the monitor itself starts this way)."""
        image = spec.image or self.config.image
        if not image:
            raise RuntimeUnavailable("no image: set the executor's image or runtime.docker.image")
        if not self.use_volumes:
            spec.make_working_directory()
        config = self.container_config(spec, image)
        executor = safe_name(spec.labels.get(EXECUTOR_LABEL, "run"), 30)
        name = f"roomhub-{safe_name(self.hub_id, 24)}-{executor}-{uuid.uuid4().hex[:8]}"
        try:
            container = await self._create(config, name)
        except (aiohttp.ClientError, OSError) as exc:
            raise RuntimeUnavailable(f"cannot reach the Docker engine at {self._where()}: {exc}") from None
        stream = self._attach(container, config["OpenStdin"], spec.tty)
        try:
            await stream.__aenter__()  # attach before start: nothing the program prints is lost
            await container.start()
        except (DockerError, aiohttp.ClientError, OSError) as exc:
            with contextlib.suppress(Exception):
                await stream.close()
            await self.remove_container(container)
            raise RuntimeUnavailable(
                f"cannot start a container of {image!r}: {describe_error(exc)}"
            ) from None
        except BaseException:  # cancelled (e.g. the room is torn down): leave nothing behind
            with contextlib.suppress(Exception):
                await stream.close()
            await asyncio.shield(self.remove_container(container))
            raise
        handle = DockerHandle(self, container, stream, spec)
        self._handles.add(handle)
        handle._exit.add_done_callback(lambda _: self._handles.discard(handle))
        if spec.tty:
            await handle.resize(spec.cols, spec.rows)
        return handle

    async def remove_container(self, container: DockerContainer) -> None:
        """Force-remove a container (and its anonymous volumes); a missing one is fine."""
        try:
            await container.delete(force=True, v=True)
        except DockerError as exc:
            if exc.status not in (404, 409):  # 409: removal already in progress
                log.warning("container %s: removal failed: %s", container.id[:12], describe_error(exc))
        except (aiohttp.ClientError, OSError) as exc:
            log.warning("container %s: removal failed: %s", container.id[:12], exc)

    async def cleanup_orphans(self, hub_id: str) -> None:
        """Remove containers, then volumes, labelled ``roomhub.hub=<hub_id>`` (and nothing else)."""
        label = {"label": [f"{HUB_LABEL}={hub_id}"]}
        containers = await self.docker.containers.list(all=True, filters=label)
        await asyncio.gather(*(self.remove_container(c) for c in containers))
        data = await self.docker.volumes.list(filters=label)
        volumes = [v["Name"] for v in data.get("Volumes") or []]
        for name in volumes:
            with contextlib.suppress(DockerError):
                await DockerVolume(self.docker, name).delete()
        if containers or volumes:
            log.info(
                "docker: removed %d containers and %d volumes left by an earlier run of hub %s",
                len(containers),
                len(volumes),
                hub_id,
            )

    async def close(self) -> None:
        """Stop what still runs (a safety net: rooms stop their own programs), close the client."""
        for mirror in list(self._mirrors.values()):
            await mirror.stop()
        self._mirrors.clear()
        if self._handles:
            log.warning("docker: %d containers still running at close; stopping them", len(self._handles))
            await asyncio.gather(*(h.kill(0) for h in list(self._handles)), return_exceptions=True)
        if self._docker is not None:
            await self._docker.close()
            self._docker = None
