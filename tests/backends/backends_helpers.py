"""Fixtures of the backends tests: a local catalog of small backends and a partition socket client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import websockets

sys.path.insert(0, str(Path(__file__).parent))

STDLIB_BACKEND = Path(__file__).parent / "stdlib_backend.py"
FRAMING_BACKEND = Path(__file__).parent / "framing_backend.py"


def stdlib_package(root: Path, name: str, version: str, *, env: str = "", deps: str = "",
                   extra_build: str = "", extra_start: str = "", options: str = "",
                   server: Path = STDLIB_BACKEND) -> Path:
    """A venv package whose server is ``server`` (default :mod:`stdlib_backend`; no download,
    starts in ~0.1 s)."""
    directory = root / f"{name}-{version}"
    directory.mkdir(parents=True)
    shutil.copy(server, directory / "server.py")
    (directory / "roomhub-backend.toml").write_text(textwrap.dedent(f"""\
        name = "{name}"
        version = "{version}"
        [dependencies]
        {deps}
        [build]
        kind = "venv"
        {extra_build}
        [build.options]
        {options}
        [start]
        command = ["{{python}}", "server.py"]
        {extra_start}
        [start.env]
        {env}
        """))
    return directory


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    root = tmp_path / "catalog"
    for version in ("1.0.0", "1.2.0", "2.0.0"):
        stdlib_package(root, "hello", version, options='greeting = "hi"',
                       env='GREETING = "{options[greeting]}"')
    stdlib_package(root, "dep_b", "1.0.0")
    stdlib_package(root, "dep_a", "1.0.0", deps='dep_b = "^1.0.0"',
                   env='MODE = "dep"\nDEP_PATH = "/backends/dep_b/^1.0.0/"')
    stdlib_package(root, "crasher", "0.1.0", env='MODE = "crash"')
    stdlib_package(root, "sleeper", "0.1.0", env='MODE = "never"', extra_start="ready_timeout = 1.5")
    stdlib_package(root, "badbuild", "0.1.0", extra_build='requirements = ["./no-such-directory"]')
    stdlib_package(root, "porty", "0.1.0", extra_start='listen = "port"')
    docker = root / "dockhello"
    docker.mkdir()
    shutil.copy(STDLIB_BACKEND, docker / "server.py")
    (docker / "Dockerfile").write_text(textwrap.dedent("""\
        FROM roomhub-test-python:latest
        ARG greeting=hello
        ENV GREETING=${greeting}
        COPY server.py /app/server.py
        """))
    (docker / "roomhub-backend.toml").write_text(textwrap.dedent("""\
        name = "dockhello"
        version = "0.3.0"
        [build]
        kind = "docker"
        [build.options]
        greeting = "hello"
        [start]
        command = ["python3", "/app/server.py"]
        ready_timeout = 30
        """))
    return root


def hub_config(tmp_path: Path, catalog: Path, **backends: Any) -> Path:
    """A configuration with the backends face over ``catalog`` (plus the shipped backends)."""
    settings = {"grace_period": 0.5, "idle_timeout": 60.0, "on_demand": False, **backends}
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    path = tmp_path / "roomhub.toml"
    path.write_text(f'[backends]\ncatalogs = [{json.dumps(str(catalog))}]\n' + "\n".join(lines) + "\n")
    return path


class PartitionSocket:
    """The partition socket of a tab: collects every event it receives."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for frame in self.ws:
                self.events.append(json.loads(frame))
                self._changed.set()

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool],
                       timeout: float = 30.0) -> dict[str, Any]:
        async def find() -> dict[str, Any]:
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                self._changed.clear()
                await self._changed.wait()
        return await asyncio.wait_for(find(), timeout)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    async def close(self) -> None:
        await self.ws.close()
        await self._task


@contextlib.asynccontextmanager
async def partition_socket(ws_base: str, partition: str,
                           owner: str | None = None) -> AsyncIterator[PartitionSocket]:
    url = f"{ws_base}/api/backends/ws?partition={partition}" + (f"&owner={owner}" if owner else "")
    async with websockets.connect(url) as ws:
        sock = PartitionSocket(ws)
        await sock.wait_for(lambda e: e["type"] == "Partition")
        try:
            yield sock
        finally:
            await sock.close()


