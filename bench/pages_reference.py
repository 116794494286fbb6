"""A reference server for the pages benchmarks: bare ``websockets`` with the hub's data flow.

It speaks just enough of the pages protocol for the benchmarks: every
connection gets a ``joined`` frame, a bounded send queue (``--queue``
frames) and a writer task, and is closed with 4008 when its queue overflows
(the hub's backpressure rule). Any client frame starts ``yes`` for
``--seconds`` if it is not running; its output goes to every connection as
the hub's JSON + base64 ``output`` frames, encoded once. What the hub's
stack (Starlette, uvicorn, its rooms) adds is measured against this.

    python bench/pages_reference.py --port N [--queue 1024] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
from typing import Any

import _common as c
import websockets

EXECUTOR = "firehose"
COMMAND = ["yes", "roomhub fan-out benchmark: one line of output written as fast as possible"]
SLOW_CONSUMER = 4008


async def reference_server(port: int, queue_frames: int, seconds: float) -> None:
    """Serve on 127.0.0.1:``port`` until killed; prints ``listening`` once ready."""
    members: dict[Any, asyncio.Queue[str | None]] = {}
    running: list[asyncio.Task[None]] = []

    def encode(message: dict[str, Any]) -> str:
        return json.dumps({"executor": EXECUTOR, "message": message}, separators=(",", ":"))

    def broadcast(frame: str) -> None:
        for ws, queue in list(members.items()):
            try:
                queue.put_nowait(frame)
            except asyncio.QueueFull:
                members.pop(ws, None)
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)
                asyncio.get_running_loop().create_task(
                    ws.close(SLOW_CONSUMER, "send queue overflow")
                )

    async def firehose() -> None:
        broadcast(encode({"type": "started"}))
        proc = await asyncio.create_subprocess_exec(
            *COMMAND, stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL
        )
        assert proc.stdout is not None

        async def pump() -> None:
            assert proc.stdout is not None
            while chunk := await proc.stdout.read(65536):
                frame = encode({"type": "output", "stdout": base64.b64encode(chunk).decode()})
                broadcast(frame)

        pumping = asyncio.create_task(pump())
        await asyncio.sleep(seconds)
        proc.kill()
        code = await proc.wait()
        await pumping
        broadcast(encode({"type": "finished", "exitCode": code, "timedOut": True}))

    async def writer(ws: Any, queue: asyncio.Queue[str | None]) -> None:
        while (frame := await queue.get()) is not None:
            await ws.send(frame)

    async def handler(ws: Any) -> None:
        queue: asyncio.Queue[str | None] = asyncio.Queue(queue_frames)
        members[ws] = queue
        await ws.send(json.dumps({"executor": None, "message": {"type": "joined"}}))
        writing = asyncio.create_task(writer(ws, queue))
        try:
            async for _ in ws:
                if not running or running[-1].done():
                    running.append(asyncio.create_task(firehose()))
        except websockets.ConnectionClosed:
            pass
        finally:
            members.pop(ws, None)
            writing.cancel()

    async with websockets.serve(
        handler, "127.0.0.1", port, max_size=1 << 20, compression=None
    ) as server:
        print("listening", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--queue", type=int, default=1024, help="send queue bound, frames")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long `yes` runs")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    arguments = parser.parse_args()
    c.run(reference_server(arguments.port, arguments.queue, arguments.seconds), arguments.loop)
