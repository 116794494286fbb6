"""Floors of this stack (uvicorn, Starlette, asyncio): idle connection memory and join time.

Two measures per server: the idle scenario of ``documents_bench.py`` (N
connected, synced, idle clients; server RSS growth per connection), and the
time for a client to join an empty room and be synced (``join`` mode of the
load generator: open the socket, send sync step 1, receive sync step 2;
median of ``--joins`` joins, each after 1.5 s of quiet, as the history
scenario does). Servers:

- ``asgi``: uvicorn (the hub's options: websockets-sansio protocol, no
  compression, 20 s pings) serving a raw ASGI endpoint that answers sync step
  1 with an empty sync step 2 and otherwise only awaits ``receive()``;
- ``starlette``: the same behind a Starlette ``WebSocketRoute`` (the
  ``WebSocket`` wrapper and the router);
- ``roomhub``: a hub with only the documents face (SQLite store);
- ``pycrdt-websocket``: 0.16.5 on uvicorn (``documents_peer_server.py``).

The bare servers are the floor: what a connection and a handshake cost
before any room, document, store or send queue exists. Run: ``python bench/documents_floor.py
[--idle 2000] [--only asgi starlette ...]``. Prints a table, then JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from _common import ServerProcess
from documents_bench import run_load, server_process

HERE = Path(__file__).resolve().parent
SERVERS = ("asgi", "starlette", "roomhub", "pycrdt-websocket")
SYNC_STEP2_EMPTY = b"\x00\x01\x02\x00\x00"  # sync message, step 2, the empty update


def bare_asgi_app() -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data and data[:2] == b"\x00\x00":
                await send({"type": "websocket.send", "bytes": SYNC_STEP2_EMPTY})

    return app


def bare_starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                data = await websocket.receive_bytes()
                if data[:2] == b"\x00\x00":
                    await websocket.send_bytes(SYNC_STEP2_EMPTY)
        except WebSocketDisconnect:
            return

    return Starlette(routes=[WebSocketRoute("/yjs/{room}", endpoint)])


def serve(kind: str, port: int) -> None:
    import uvicorn

    ws: Any = "websockets-sansio"
    app = bare_starlette_app() if kind == "starlette" else bare_asgi_app()
    uvicorn.run(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
        ws=ws, ws_per_message_deflate=False, ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
    )


class BareProcess(ServerProcess):
    """One of the bare servers of this module (``kind``), in its own process."""

    def __init__(self, kind: str) -> None:
        self.name = kind
        super().__init__()

    def argv(self) -> list[str]:
        return [sys.executable, __file__, "--serve", self.name, str(self.port)]


def measure(kind: str, idle: int, joins: int) -> dict[str, Any]:
    server = server_process(kind) if kind in ("roomhub", "pycrdt-websocket") else BareProcess(kind)
    with server:
        assert server.ps is not None
        time.sleep(0.5)
        result = run_load(server.port, "idle", server.ps, rooms=idle // 100, clients=100)
        joined = run_load(server.port, "join", server.ps, joins=joins, coldDelay=1.5)
        result["join_ms_median"] = joined["join_ms_median"]
        result["join_ms"] = joined["join_ms"]
        return result


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=2000, help="idle clients (multiple of 100)")
    parser.add_argument("--joins", type=int, default=9, help="joins of an empty room (median)")
    parser.add_argument("--only", nargs="+", choices=SERVERS, default=list(SERVERS))
    args = parser.parse_args()
    results = {}
    for kind in args.only:
        results[kind] = measure(kind, args.idle, args.joins)
        print(f"{kind}: {json.dumps(results[kind])}", file=sys.stderr, flush=True)
    print(f"\n{'server':20} {'KiB/connection':>15} {'RSS MiB':>9} {'unsynced':>9} {'join ms':>8}")
    for kind, r in results.items():
        print(f"{kind:20} {r['rss_per_connection_bytes'] / 1024:15.2f} {r['rss_mb']:9.1f} "
              f"{r['unsynced']:9d} {r['join_ms_median']:8.2f}")
    print(json.dumps({"options": vars(args), "results": results}, indent=1))


if __name__ == "__main__":
    main()
