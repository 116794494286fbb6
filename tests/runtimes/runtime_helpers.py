"""Helpers of the runtime suite: which runtimes are usable here, page configs, a pages client.

Docker tests need a reachable engine and the locally built test image
(``scripts/setup-docker.sh``). Locally they are skipped with the reason;
when ``CI`` is set they fail instead, so CI can never pass without them.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest

from hubtest import write_config
from pageclient import PageClient as BasePageClient

TEST_IMAGE = os.environ.get("ROOMHUB_TEST_IMAGE", "roomhub-test-busybox:latest")
RUNTIMES = ["process", "bubblewrap", "docker"]
ON_CI = bool(os.environ.get("CI"))


def _unusable(reason: str) -> None:
    if ON_CI:
        pytest.fail(f"{reason} (CI is set: these tests must run here)", pytrace=False)
    pytest.skip(reason)


async def _docker_problem() -> str | None:
    import aiodocker

    try:
        docker = aiodocker.Docker()
    except Exception as exc:
        return f"no Docker engine found ({exc}); run scripts/setup-docker.sh"
    try:
        await asyncio.wait_for(docker.version(), 5)
        try:
            await docker.images.inspect(TEST_IMAGE)
        except aiodocker.DockerError:
            return f"test image {TEST_IMAGE} is missing; run scripts/setup-docker.sh"
    except Exception as exc:
        return f"the Docker engine is unreachable ({exc}); run scripts/setup-docker.sh"
    finally:
        await docker.close()
    return None


_checked: dict[str, str | None] = {}


def runtime_problem(name: str) -> str | None:
    """Why ``name`` cannot run here (``None``: usable). Checked once per session."""
    if name not in _checked:
        if name == "bubblewrap":
            _checked[name] = (
                None if shutil.which("bwrap") else "bwrap not installed (apt-get install bubblewrap)"
            )
        elif name == "docker":
            _checked[name] = asyncio.run(_docker_problem())
        else:
            _checked[name] = None
    return _checked[name]


def require(name: str) -> None:
    problem = runtime_problem(name)
    if problem:
        _unusable(problem)


def page_config(directory: Path, runtime: str, executors: str, docker: str = "", page: str = "/p") -> Path:
    """A hub configuration with one page ``page`` whose executors are the TOML in ``executors``.

    Executor tables are written relative to the page: ``[x.NAME]`` becomes
    ``[pages."/p".executors.NAME]``.
    """
    body = textwrap.dedent(executors).replace("[x.", f'[pages."{page}".executors.')
    text = (
        f'[runtime]\ndefault = "{runtime}"\n\n'
        f'[runtime.docker]\nimage = "{TEST_IMAGE}"\n{textwrap.dedent(docker)}\n'
        f'[pages."{page}"]\nhtml = "page.html"\n\n{body}'
    )
    return write_config(directory, text)


def shell_page(directory: Path, runtime: str, executor: str, script: str, more: str = "",
               docker: str = "") -> Path:
    """:func:`page_config` with one ``once`` executor running ``sh -c script`` (``more``: TOML
    after the page's tables, e.g. a ``[runtime.bubblewrap]`` table)."""
    body = f'[x.{executor}]\ntype = "once"\ncommand = ["sh", "-c", {json.dumps(script)}]\n\n{more}'
    return page_config(directory, runtime, body, docker)


class PageClient(BasePageClient):
    """The shared pages client, plus joining by room name and consuming typed messages."""

    @classmethod
    async def join(cls, base_ws: str, room: str, page: str = "/p") -> PageClient:
        return await cls.connect(f"{base_ws}{page}/ws?roomName={room}", max_size=None)  # type: ignore[return-value]

    async def message(
        self,
        executor: str,
        type_: str,
        timeout: float = 20.0,
        **fields: Any,
    ) -> dict[str, Any]:
        """Wait for ``{"executor": executor, "message": {"type": type_, **fields}}``; return it.

        The frame is consumed: the next call with the same arguments finds the next one.
        """

        def match(frame: dict[str, Any]) -> bool:
            msg = frame.get("message") or {}
            return (
                frame.get("executor") == executor
                and msg.get("type") == type_
                and all(msg.get(k) == v for k, v in fields.items())
            )

        frame = await self.wait_for(match, timeout)
        self.frames.remove(frame)
        return frame["message"]

    async def wait_output(self, executor: str, needle: bytes, timeout: float = 20.0) -> bytes:
        return await super().wait_output(executor, needle, timeout)

    async def __aenter__(self) -> PageClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def run_once(
    hub_ws: str,
    room: str,
    executor: str,
    timeout: float = 30,
) -> tuple[dict, bytes]:
    """Join ``room``, press ``executor`` once; returns its ``finished`` message and output."""
    async with await PageClient.join(hub_ws, room) as client:
        await client.send(executor, None)
        finished = await client.message(executor, "finished", timeout=timeout)
        return finished, client.output(executor)


async def docker_objects(label: str) -> tuple[list[str], list[str]]:
    """Ids of containers (running or not) and names of volumes with ``label`` (``key=value``)."""
    import aiodocker

    async with aiodocker.Docker() as docker:
        filters = {"label": [label]}
        containers = [c.id for c in await docker.containers.list(all=True, filters=filters)]
        volumes = [v["Name"] for v in (await docker.volumes.list(filters=filters)).get("Volumes") or []]
    return containers, volumes
