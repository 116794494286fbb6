"""A scripted pages client over a real WebSocket (the ``websockets`` library)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import websockets

from hubtest import write_config


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


ROOMS_CONFIG = """
[server]
log_level = "debug"
[server.limits]
max_clients_per_room = {max_clients}
max_rooms_per_namespace = {max_rooms}
send_buffer_bytes = {send_buffer}
max_json_depth = {json_depth}

[pages."/p"]
html = "page.html"
grace_period = {grace}

[pages."/p".executors.cat]
type = "always"
command = ["cat"]
restart_delay = 0.05

[pages."/p".executors.log]
type = "prologue"
command = ["sh", "-c", "echo prologue >> {logfile}"]

[pages."/p".executors.bye]
type = "epilogue"
command = ["sh", "-c", "sleep {epilogue_sleep}; echo epilogue >> {logfile}"]

[pages."/other"]
html = "page.html"
[pages."/other".executors.cat]
type = "always"
command = ["cat"]
"""


def rooms_config(tmp_path: Path, extra: str = "", **kw: object) -> Path:
    """A hub configuration of two pages (``/p``: a ``cat`` terminal, a prologue and an epilogue
    writing to ``events.log``; ``/other``) with the room limits ``kw`` sets."""
    values = {"max_clients": 50, "max_rooms": 100, "send_buffer": 16 * 1024 * 1024, "grace": 0.0,
              "logfile": tmp_path / "events.log", "epilogue_sleep": 0, "json_depth": 64}
    values.update(kw)
    return write_config(tmp_path / "cfg", ROOMS_CONFIG.format(**values) + extra)


def room_events(tmp_path: Path) -> list[str]:
    """What the prologues and epilogues of :data:`ROOMS_CONFIG` wrote, in order."""
    try:
        return (tmp_path / "events.log").read_text().split()
    except FileNotFoundError:
        return []
