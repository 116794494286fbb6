"""pycrdt-websocket 0.16.5 as the documents benchmark's peer: ASGIServer on uvicorn, SQLite store.

``python documents_peer_server.py PORT DB_PATH``. Rooms are named by the URL
path (``/yjs/<room>``), each with an ``SQLiteYStore`` in DB_PATH that is
loaded into the room's document before the room is used (the application
code pycrdt-websocket leaves to its users) and started under a per-room
lock (without it, clients joining a fresh room at once are left unsynced, a
defect of the stock ``get_room``/``start_room``); the database's tables are
created once at start-up (rooms' stores creating them at once collide);
empty rooms are deleted
(``auto_clean_rooms``), so a later join loads the document again.
"""

from __future__ import annotations

import sys
from collections import defaultdict

import anyio
import uvicorn
from pycrdt import Doc
from pycrdt.store import SQLiteYStore, YDocNotFound
from pycrdt.websocket import ASGIServer, WebsocketServer, YRoom, exception_logger


class Store(SQLiteYStore):
    db_path = sys.argv[2]


class Server(WebsocketServer):
    def __init__(self) -> None:
        super().__init__(auto_clean_rooms=True, exception_handler=exception_logger)
        self._locks: defaultdict[str, anyio.Lock] = defaultdict(anyio.Lock)

    async def get_room(self, name: str) -> YRoom:
        async with self._locks[name]:
            if name not in self.rooms:
                assert self._task_group is not None
                ystore = Store(path=name)
                await self._task_group.start(ystore.start)
                doc = Doc()
                try:
                    await ystore.apply_updates(doc)
                except YDocNotFound:
                    pass
                self.rooms[name] = YRoom(ready=True, ystore=ystore, ydoc=doc, log=self.log)
            room = self.rooms[name]
            # Started under the lock: concurrent first joins otherwise race in start_room
            # ("YRoom already running", swallowed) and leave clients unsynced.
            await self.start_room(room)
        return room


async def main(port: int) -> None:
    async with Server() as server:
        # Create the tables once: rooms' stores initialising the same file at once collide
        # ("table yupdates already exists").
        assert server._task_group is not None
        init = Store(path="__init__")
        await server._task_group.start(init.start)
        assert init.db_initialized is not None
        await init.db_initialized.wait()
        config = uvicorn.Config(
            ASGIServer(server), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
        await uvicorn.Server(config).serve()


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]))
