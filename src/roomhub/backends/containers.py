"""Docker for backends, through aiodocker: image builds and service containers.

- :meth:`DockerEngine.build_image` runs ``docker build`` on a package
  directory (build options as build args, optionally a Dockerfile given by
  the client), streaming the builder's output line by line. Nothing is
  pulled (``pull=False``): base images must already be on the engine.
- :meth:`DockerEngine.run` starts a service container with no network at
  all (``NetworkMode: none``), every capability dropped and
  ``no-new-privileges``, and one bind mount: the instance's socket
  directory at ``/run/roomhub``. The backend listens on the Unix socket
  ``/run/roomhub/backend.sock`` there, which the hub reaches on its side of
  the mount: nothing but the hub can reach the service (no port is
  published anywhere), and it works on engines started with
  ``--bridge=none``.

Containers carry the labels ``roomhub.hub`` and ``roomhub.backend`` so
that :meth:`DockerEngine.cleanup` removes what a crashed run left.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import math
import os
import tarfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
from aiodocker.containers import DockerContainer
from aiodocker.exceptions import DockerError

from ..runtimes.base import ProgramHandle, RuntimeUnavailable, Stream
from ..runtimes.docker import describe_error, open_engine

log = logging.getLogger("roomhub.backends.containers")

CONTAINER_SOCKET_DIR = "/run/roomhub"
HUB_LABEL = "roomhub.hub"
BACKEND_LABEL = "roomhub.backend"
ENGINE_ERRORS = (DockerError, aiohttp.ClientError, OSError, ValueError)


def context_tar(directory: Path, dockerfile: str | None) -> tuple[io.BytesIO, str | None]:
    """A tar of ``directory`` (the build context); a given Dockerfile text is added as
    ``Dockerfile.roomhub`` and its name returned."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(str(directory), arcname=".")
        name = None
        if dockerfile is not None:
            name = "Dockerfile.roomhub"
            data = dockerfile.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer, name


class ContainerHandle(ProgramHandle):
    """A backend's container: merged output (TTY), wait, stop-and-remove."""

    def __init__(self, engine: DockerEngine, container: DockerContainer) -> None:
        self.engine = engine
        self.container = container
        self.id = container.id
        self._exit = asyncio.create_task(self._finish())

    async def _finish(self) -> int:
        try:
            result = await self.container.wait(timeout=None)
            return int(result.get("StatusCode", -1))
        except ENGINE_ERRORS as exc:
            log.warning("container %s: wait failed: %s", self.id[:12], describe_error(exc))
            return -1

    async def output(self) -> AsyncIterator[tuple[Stream, bytes]]:
        try:
            async for line in self.container.log(stdout=True, stderr=True, follow=True, timeout=None):
                yield "stdout", line.encode() if isinstance(line, str) else line
        except ENGINE_ERRORS as exc:
            log.debug("container %s: log stream ended: %s", self.id[:12], describe_error(exc))

    async def write(self, data: bytes) -> None:
        raise BrokenPipeError("backend containers have no stdin")

    async def resize(self, cols: int, rows: int) -> None:
        return None

    async def wait(self) -> int:
        return await asyncio.shield(self._exit)

    async def kill(self, grace: float = 2.0) -> int:
        """SIGTERM, SIGKILL after ``grace`` seconds, then remove the container."""
        if not self._exit.done():
            with contextlib.suppress(*ENGINE_ERRORS):
                await self.container.stop(t=max(0, math.ceil(grace)))
        try:
            code = await asyncio.wait_for(asyncio.shield(self._exit), grace + 5)
        except TimeoutError:
            code = -9
        await self.engine.remove(self.container)
        return code


class DockerEngine:
    """A lazily opened aiodocker client (``url``: engine URL, default ``DOCKER_HOST`` or the socket)."""

    def __init__(self, url: str | None, hub_id: str) -> None:
        self.url = url or os.environ.get("DOCKER_HOST") or None
        self.hub_id = hub_id
        self._docker: aiodocker.Docker | None = None

    @property
    def docker(self) -> aiodocker.Docker:
        if self._docker is None:
            self._docker = open_engine(self.url)
        return self._docker

    async def check(self, timeout: float = 5.0) -> None:
        """Raise :class:`RuntimeUnavailable` if the engine does not answer within ``timeout`` s."""
        try:
            await asyncio.wait_for(self.docker.version(), timeout)
        except (*ENGINE_ERRORS, TimeoutError) as exc:
            raise RuntimeUnavailable(f"cannot reach the Docker engine: {describe_error(exc)}") from None

    async def build_image(self, directory: Path, tag: str, dockerfile_path: str, dockerfile_text: str | None,
                          build_args: dict[str, str], labels: dict[str, str],
                          on_line: Callable[[str], None]) -> None:
        """``docker build`` of ``directory`` tagged ``tag``; raises ``RuntimeError`` with the
        builder's error when the build fails (``on_line`` got every output line)."""
        await self.check()
        context, override = context_tar(directory, dockerfile_text)
        try:
            stream = self.docker.images.build(
                fileobj=context, encoding="application/x-tar", tag=tag, buildargs=build_args,
                path_dockerfile=override or dockerfile_path, labels=labels, rm=True, forcerm=True,
                pull=False, stream=True, timeout=None,
            )
            async for chunk in stream:
                if "stream" in chunk:
                    for line in str(chunk["stream"]).splitlines():
                        if line.strip():
                            on_line(line)
                elif "error" in chunk:
                    on_line(str(chunk["error"]).strip())
                    raise RuntimeError(str(chunk["error"]).strip())
                elif "status" in chunk:
                    on_line(str(chunk["status"]))
        except ENGINE_ERRORS as exc:
            on_line(describe_error(exc))
            raise RuntimeError(describe_error(exc)) from None

    async def run(self, image: str, argv: list[str] | None, env: dict[str, str], socket_dir: Path,
                  labels: dict[str, str], name: str) -> ContainerHandle:
        """Create and start a service container (see the module doc for its isolation).

        ``argv`` None keeps the image's CMD. Raises :class:`RuntimeUnavailable`
        when the engine refuses (the message names the image).
        """
        config: dict[str, Any] = {
            "Image": image,
            "Env": [f"{k}={v}" for k, v in env.items()],
            "Tty": True,
            "AttachStdout": False,
            "AttachStderr": False,
            "NetworkDisabled": True,
            "Labels": {**labels, HUB_LABEL: self.hub_id},
            "HostConfig": {
                "NetworkMode": "none",
                "CapDrop": ["ALL"],
                "SecurityOpt": ["no-new-privileges"],
                "Mounts": [{"Type": "bind", "Source": str(socket_dir), "Target": CONTAINER_SOCKET_DIR}],
            },
        }
        if argv:
            config["Cmd"] = list(argv)
        try:
            container = await self.docker.containers.create(config, name=name)
        except ENGINE_ERRORS as exc:
            raise RuntimeUnavailable(
                f"cannot create a container of {image!r}: {describe_error(exc)}") from None
        try:
            await container.start()
        except ENGINE_ERRORS as exc:
            await self.remove(container)
            raise RuntimeUnavailable(
                f"cannot start a container of {image!r}: {describe_error(exc)}") from None
        return ContainerHandle(self, container)

    async def remove(self, container: DockerContainer) -> None:
        try:
            await container.delete(force=True)
        except DockerError as exc:
            if exc.status not in (404, 409):
                log.warning("container %s: removal failed: %s", container.id[:12], describe_error(exc))
        except (aiohttp.ClientError, OSError) as exc:
            log.warning("container %s: removal failed: %s", container.id[:12], exc)

    async def cleanup(self) -> None:
        """Remove backend containers a crashed earlier run of this hub left behind."""
        local_socket = os.path.exists("/var/run/docker.sock")  # noqa: ASYNC240 (one stat)
        if self._docker is None and not (self.url or local_socket):
            return
        try:
            await self.check(2.0)
            filters = json.dumps({"label": [f"{HUB_LABEL}={self.hub_id}", BACKEND_LABEL]})
            containers = await self.docker.containers.list(all=True, filters=filters)
        except (RuntimeUnavailable, *ENGINE_ERRORS):
            return
        await asyncio.gather(*(self.remove(c) for c in containers))
        if containers:
            log.info("docker: removed %d backend containers left by an earlier run", len(containers))

    async def close(self) -> None:
        if self._docker is not None:
            await self._docker.close()
            self._docker = None
