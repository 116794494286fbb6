"""The servers the actions benchmark compares, with the same echo, stream and broadcast handlers.

- ``API``: roomhub's actions API (served by ``roomhub serve`` with an ``[actions]`` section).
- ``sio_app``: python-socketio 5 (ASGI) on uvicorn, the library a Python developer would pick.
- ``baseline_app``: a bare Starlette WebSocket speaking Igor's shapes, one call at a time per
  connection, no sessions, limits or processes: the floor of what any server here can cost.

Handlers: ``echo`` returns its data; ``stream`` sends ``STREAM_FRAMES`` data frames; ``blast``
broadcasts ``n`` messages to every client (from a process for roomhub, a background task for
python-socketio).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import socketio
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from roomhub.actions import ActionsAPI

STREAM_FRAMES = 10
BURST = 50  # broadcast messages sent between two yields to the event loop

# -- roomhub ------------------------------------------------------------------------------------

API = ActionsAPI()


@API.action("echo")
async def echo(output: Any, data: Any) -> Any:
    return data


@API.action("stream")
async def stream(output: Any, data: Any) -> None:
    for i in range(STREAM_FRAMES):
        output.send({"i": i})


@API.action("blast")
async def blast(output: Any, data: Any, *, scope: dict[str, Any]) -> str:
    await scope["blast_queue"].put(int(data))
    return "started"


@API.process("blaster")
async def blaster(output: Any, *, scope: dict[str, Any]) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    scope["blast_queue"] = queue
    while True:
        n = await queue.get()
        for i in range(n):
            output.send("b", i)
            if i % BURST == BURST - 1:
                await asyncio.sleep(0.001)


# -- python-socketio ------------------------------------------------------------------------------

sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*", max_http_buffer_size=1 << 20)
sio_app = socketio.ASGIApp(sio)


@sio.on("echo")
async def sio_echo(sid: str, data: Any) -> Any:
    return data


@sio.on("stream")
async def sio_stream(sid: str, data: Any) -> None:
    for i in range(STREAM_FRAMES):
        await sio.emit("item", {"i": i}, to=sid)


@sio.on("blast")
async def sio_blast(sid: str, data: Any) -> str:
    async def run(n: int) -> None:
        for i in range(n):
            await sio.emit("b", i)
            if i % BURST == BURST - 1:
                await asyncio.sleep(0.001)

    sio.start_background_task(run, int(data))
    return "started"


# -- bare baseline ---------------------------------------------------------------------------

encode = json.JSONEncoder(separators=(",", ":")).encode  # the same compact JSON as roomhub's


async def baseline_socket(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            msg = json.loads(await websocket.receive_text())
            sid = msg["streamId"]
            if msg["action"] == "stream":
                for i in range(STREAM_FRAMES):
                    await websocket.send_text(encode({"streamId": sid, "data": {"i": i}}))
            else:
                await websocket.send_text(encode({"streamId": sid, "data": msg.get("data")}))
            await websocket.send_text(encode({"streamId": sid, "close": True}))
    except WebSocketDisconnect:
        pass


baseline_app = Starlette(routes=[WebSocketRoute("/actions", baseline_socket)])
