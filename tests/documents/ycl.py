"""A pycrdt client for the tests: pycrdt's own ``Provider`` over a ``websockets`` connection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from pycrdt import Doc, Provider, Text
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed


class WebsocketsChannel:
    """pycrdt's ``Channel`` over a ``websockets`` client connection (binary frames)."""

    def __init__(self, ws: ClientConnection, path: str) -> None:
        self.ws = ws
        self._path = path

    @property
    def path(self) -> str:
        return self._path

    def __aiter__(self) -> WebsocketsChannel:
        return self

    async def __anext__(self) -> bytes:
        try:
            message = await self.ws.recv()
        except ConnectionClosed:
            raise StopAsyncIteration from None
        return message if isinstance(message, bytes) else message.encode()

    async def send(self, message: bytes) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(message)

    async def recv(self) -> bytes:
        return await self.__anext__()


def typed_updates(count: int, key: str = "text") -> tuple[list[bytes], str]:
    """The updates of a client typing ``count`` characters at the end of root text ``key``
    (each builds on the one before), and the text they make."""
    doc = Doc()
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    text = doc.get(key, type=Text)
    for i in range(count):
        text += str(i % 10)
    return updates, str(text)


@dataclass
class YClient:
    doc: Doc
    ws: ClientConnection
    provider: Provider


@contextlib.asynccontextmanager
async def y_client(
    base_ws: str, room: str, doc: Doc | None = None, within: float = 10.0
) -> AsyncIterator[YClient]:
    """Connect a pycrdt ``Doc`` to ``/yjs/<room>`` and wait for sync step 2."""
    doc = doc or Doc()
    async with connect(f"{base_ws}/yjs/{room}", max_size=None) as ws:
        provider = Provider(doc, WebsocketsChannel(ws, room))
        async with provider:
            await asyncio.wait_for(provider.synced.wait(), within)
            yield YClient(doc, ws, provider)


