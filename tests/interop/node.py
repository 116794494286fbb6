"""Drive the y-websocket npm client under Node (``yclient.mjs``) from a test."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def ensure_node_modules() -> None:
    """Install the Node clients here (``npm install``) unless already installed."""
    if shutil.which("node") is None:
        raise RuntimeError("node is not installed: the interop tests need Node.js >= 18")
    wanted = json.loads((HERE / "package.json").read_text())["dependencies"]
    if not all((HERE / "node_modules" / name).is_dir() for name in wanted):
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund"], cwd=HERE, check=True, timeout=300
        )


class NodeClient:
    """One ``WebsocketProvider`` in its own Node process; events arrive as JSON lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.history: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                self.history.append(event)
                await self.events.put(event)

    async def send(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        await self.proc.stdin.drain()

    async def wait(self, name: str, within: float = 15.0) -> dict[str, Any]:
        """The next event called ``name`` (earlier other events are skipped)."""
        async with asyncio.timeout(within):
            while True:
                event = await self.events.get()
                if event.get("event") == name:
                    return event

    async def dump(self) -> dict[str, Any]:
        await self.send(op="dump")
        return (await self.wait("dump"))["doc"]

    async def peers(self) -> dict[str, Any]:
        await self.send(op="peers")
        return (await self.wait("peers"))["states"]


@contextlib.asynccontextmanager
async def node_client(
    server_url: str, room: str, wait_synced: bool = True
) -> AsyncIterator[NodeClient]:
    """Start ``node yclient.mjs <server_url> <room>``; wait for its first sync unless told not."""
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(HERE / "yclient.mjs"),
        server_url,
        room,
        cwd=HERE,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    client = NodeClient(proc)
    try:
        if wait_synced:
            await client.wait("synced")
        yield client
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        client._reader.cancel()
