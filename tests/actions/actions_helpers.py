"""Helpers of the actions tests: a hub configuration and an Igor-style client on `websockets`."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import websockets

from hubtest import write_config

HERE = Path(__file__).resolve().parent


def actions_config(directory: Path, actions: str = "", more: str = "") -> Path:
    """A config serving ``actions_sample_api:API``; ``actions`` adds keys to ``[actions]``."""
    return write_config(
        directory,
        f"""
[actions]
api = "actions_sample_api:API"
pythonpath = ["{HERE}"]
{actions}
{more}
""",
    )


def file_server_config(directory: Path, root: Path, files: str = "") -> Path:
    """:func:`actions_config` with the file server on, serving ``root``; ``files`` adds keys to
    ``[actions.files]``."""
    return actions_config(directory, more=f'[actions.files]\nenabled = true\nroot = "{root}"\n{files}\n')


class IgorClient:
    """A client speaking Igor's message shapes over a real WebSocket, demultiplexing by streamId;
    it asks for roomhub's additions and keeps the session frame."""

    _ids = itertools.count(1)

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.streams: dict[str, asyncio.Queue[dict[str, Any]]] = defaultdict(asyncio.Queue)
        self.other: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.session: dict[str, Any] = {}
        self.closed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, base: str, *, session: dict[str, Any] | None = None, **kwargs: Any) -> IgorClient:
        url = f"{base}/actions?roomhub=1"  # asks for the session frame
        if session:
            url += f"&sessionId={session['id']}&sessionToken={session['token']}"
        ws = await websockets.connect(url, max_size=None, **kwargs)
        client = cls(ws)
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
        client.session = welcome["session"]
        client._reader = asyncio.create_task(client._read())
        return client

    async def _read(self) -> None:
        try:
            async for text in self.ws:
                msg = json.loads(text)
                sid = msg.get("streamId")
                (self.other if sid is None else self.streams[sid]).put_nowait(msg)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed.set()

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    @property
    def close_reason(self) -> str | None:
        return self.ws.close_reason

    async def send(self, msg: dict[str, Any] | str | bytes) -> None:
        await self.ws.send(msg if isinstance(msg, str | bytes) else json.dumps(msg))

    async def start(self, action: str, data: Any = None, sid: str | None = None) -> str:
        sid = sid or f"s{next(self._ids)}"
        await self.send({"streamId": sid, "action": action, "data": data})
        return sid

    async def next(self, sid: str, within: float = 10) -> dict[str, Any]:
        return await asyncio.wait_for(self.streams[sid].get(), within)

    async def finish(self, sid: str, within: float = 10) -> list[dict[str, Any]]:
        """Frames of stream ``sid`` up to and including ``close``."""
        frames = []
        while True:
            msg = await self.next(sid, within)
            frames.append(msg)
            if msg.get("close"):
                return frames

    async def call(self, action: str, data: Any = None, within: float = 10) -> list[dict[str, Any]]:
        return await self.finish(await self.start(action, data), within)

    async def value(self, action: str, data: Any = None, within: float = 10) -> Any:
        """The last data frame of a call that must not fail."""
        frames = await self.call(action, data, within)
        assert not any("error" in f for f in frames), frames
        return [f["data"] for f in frames if "data" in f][-1]

    async def protocol_error(self, within: float = 10) -> dict[str, Any]:
        return await asyncio.wait_for(self.other.get(), within)

    async def wait_closed(self, within: float = 10) -> None:
        await asyncio.wait_for(self.closed.wait(), within)

    async def close(self) -> None:
        await self.ws.close()
        if self._reader:
            await self._reader


def data_of(frames: list[dict[str, Any]]) -> list[Any]:
    return [f["data"] for f in frames if "data" in f]


