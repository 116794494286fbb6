"""A scripted pages client over a real WebSocket (the ``websockets`` library)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from typing import Any

import websockets


class PageClient:
    """Speaks the pages protocol; keeps every frame received, in order."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []

    @classmethod
    async def connect(cls, url: str, *, additions: bool = True, **kwargs: Any) -> PageClient:
        """Open ``url``; with ``additions`` it asks for roomhub's additions (``roomhub=1``) as
        roomhub's browser client does, without it the client is one of interactive-widgets'."""
        if additions:
            url += "&roomhub=1" if "?" in url else "?roomhub=1"
        return cls(await websockets.connect(url, open_timeout=10, **kwargs))

    async def send(self, executor: str, message: Any = None) -> None:
        await self.ws.send(json.dumps({"executor": executor, "message": message}))

    async def stdin(self, executor: str, text: str) -> None:
        await self.send(executor, {"stdin": base64.b64encode(text.encode()).decode()})

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        """Return the first frame (already received or coming) matching ``predicate``."""
        for frame in self.frames:
            if predicate(frame):
                return frame
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no matching frame in {timeout} s; got {self.frames[-10:]}")
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), remaining))
            self.frames.append(frame)
            if predicate(frame):
                return frame

    async def wait_type(self, executor: str | None, type_: str, timeout: float = 10.0) -> dict[str, Any]:
        return await self.wait_for(
            lambda f: f["executor"] == executor and f["message"].get("type") == type_, timeout
        )

    def output(self, executor: str) -> bytes:
        out = b""
        for f in self.frames:
            m = f["message"]
            if f["executor"] == executor and m.get("type") == "output":
                out += base64.b64decode(m.get("stdout") or m.get("stderr") or "")
        return out

    async def wait_output(self, executor: str, needle: bytes, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.output(executor):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                tail = self.output(executor)[-500:]
                raise TimeoutError(f"{needle!r} not in output of {executor}: {tail!r}")
            try:
                frame = json.loads(await asyncio.wait_for(self.ws.recv(), remaining))
            except TimeoutError:
                continue
            self.frames.append(frame)
        return self.output(executor)

    async def quiet(self, seconds: float = 0.3) -> list[dict[str, Any]]:
        """Collect whatever arrives during ``seconds``."""
        got = []
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                frame = json.loads(await asyncio.wait_for(self.ws.recv(), remaining))
            except TimeoutError:
                break
            self.frames.append(frame)
            got.append(frame)
        return got

    async def close(self) -> None:
        await self.ws.close()


def monitor_contents(frame: dict[str, Any]) -> bytes | None:
    """The file contents carried by a file executor's output frame (monitor line), if any."""
    m = frame["message"]
    if m.get("type") != "output" or "stdout" not in m:
        return None
    line = json.loads(base64.b64decode(m["stdout"]))
    return base64.b64decode(line["contents"]) if "contents" in line else None
