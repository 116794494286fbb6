"""Helpers of the runtime suite: which runtimes are usable here, page configs, a pages client.

Docker tests need a reachable engine and the locally built test image
(``scripts/setup-docker.sh``). Locally they are skipped with the reason;
when ``CI`` is set they fail instead, so CI can never pass without them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import websockets

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
                None
                if shutil.which("bwrap")
                else "bwrap not installed (apt-get install bubblewrap)"
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


def write_config(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "page.html").write_text("<!doctype html><p>page</p>")
    path = directory / "roomhub.toml"
    path.write_text(text)
    return path


def page_config(
    directory: Path, runtime: str, executors: str, docker: str = "", page: str = "/p"
) -> Path:
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


class PageClient:
    """A pages-protocol client (the ``websockets`` library) that records every frame."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []

    @classmethod
    async def connect(cls, base_ws: str, room: str, page: str = "/p") -> PageClient:
        ws = await websockets.connect(f"{base_ws}{page}/ws?roomName={room}", max_size=None)
        return cls(ws)

    async def send(self, executor: str, message: Any) -> None:
        await self.ws.send(json.dumps({"executor": executor, "message": message}))

    async def stdin(self, executor: str, data: bytes) -> None:
        await self.send(executor, {"stdin": base64.b64encode(data).decode()})

    async def next_frame(self, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.frames.append(frame)
        return frame

    async def wait_for(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float = 20.0,  # noqa: ASYNC109
        what: str = "a frame",
    ) -> dict[str, Any]:
        """The first frame (received or new) matching ``predicate``; fails after ``timeout`` s."""
        for frame in self.frames:
            if predicate(frame):
                return frame
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                frame = await self.next_frame(left)
            except TimeoutError:
                raise AssertionError(
                    f"timed out waiting for {what}; frames: {self.frames[-15:]}"
                ) from None
            if predicate(frame):
                return frame

    async def message(
        self,
        executor: str,
        type_: str,
        timeout: float = 20.0,  # noqa: ASYNC109
        **fields: Any,
    ) -> dict[str, Any]:
        """Wait for ``{"executor": executor, "message": {"type": type_, **fields}}``; return it."""

        def match(frame: dict[str, Any]) -> bool:
            msg = frame.get("message") or {}
            return (
                frame.get("executor") == executor
                and msg.get("type") == type_
                and all(msg.get(k) == v for k, v in fields.items())
            )

        frame = await self.wait_for(match, timeout, f"{executor}:{type_} {fields or ''}")
        self.frames.remove(frame)  # consumed: the next call finds the next one
        return frame["message"]

    def output(self, executor: str) -> bytes:
        out = b""
        for frame in self.frames:
            msg = frame.get("message") or {}
            if frame.get("executor") == executor and msg.get("type") == "output":
                out += base64.b64decode(msg.get("stdout") or msg.get("stderr") or "")
        return out

    async def wait_output(self, executor: str, needle: bytes, timeout: float = 20.0) -> bytes:  # noqa: ASYNC109
        """Wait until ``executor``'s output so far contains ``needle``; returns that output."""
        deadline = time.monotonic() + timeout
        while needle not in self.output(executor):
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                await self.next_frame(left)
            except TimeoutError:
                raise AssertionError(
                    f"{executor}: {needle!r} not in output {self.output(executor)[-500:]!r}; "
                    f"frames: {self.frames[-10:]}"
                ) from None
        return self.output(executor)

    async def close(self) -> None:
        await self.ws.close()

    async def __aenter__(self) -> PageClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def docker_objects(label: str) -> tuple[list[str], list[str]]:
    """Ids of containers (running or not) and names of volumes with ``label`` (``key=value``)."""
    import aiodocker

    async with aiodocker.Docker() as docker:
        filters = {"label": [label]}
        containers = [c.id for c in await docker.containers.list(all=True, filters=filters)]
        volumes = [
            v["Name"] for v in (await docker.volumes.list(filters=filters)).get("Volumes") or []
        ]
    return containers, volumes


async def eventually(
    check: Callable[[], Any],
    timeout: float = 15.0,  # noqa: ASYNC109
    interval: float = 0.05,
) -> Any:
    """Poll ``check`` (sync or async) until it returns a truthy value; fails after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last value {value!r})")
        await asyncio.sleep(interval)
