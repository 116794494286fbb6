"""roomhub's demo backend (FastAPI), started by the hub per partition behind ``/backends``.

Endpoints: ``GET /`` (readiness), ``GET /hello-world``, ``POST /cow-say``
``{message, character}`` (text), ``GET /partition``, ``POST /digest``
(size and SHA-256 of a streamed body), ``GET /bytes/{n}`` (streams ``n`` bytes),
``WS /ws`` (echo), ``GET /docs``. The hub sets ``ROOMHUB_PARTITION`` and
``ROOMHUB_BASE_PATH`` (the root path, given to uvicorn as ``--root-path``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import textwrap
from collections.abc import AsyncIterator
from typing import Literal

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field

log = logging.getLogger("uvicorn.error")
PARTITION = os.environ.get("ROOMHUB_PARTITION", "Default")

app = FastAPI(title="roomhub demo backend", version="0.1.0",
              description="A small backend installed on demand by roomhub, one instance per partition.")

CHARACTERS = {
    "cow": r"""
        \   ^__^
         \  (oo)\_______
            (__)\       )\/\
                ||----w |
                ||     ||""",
    "trex": r"""
        \
         \      .-=-.
          \    /  ! )\
              /  /  ( \
            _/  /|   \ `-.
           / o  \ \   `.  `-.
          (__.-. `-`.  )    `.
                  `-`-'""",
    "cat": r"""
        \
         \   /\_/\
            ( o.o )
             > ^ <""",
}


class CowSay(BaseModel):
    message: str = Field(max_length=2000, description="What to say.")
    character: Literal["cow", "trex", "cat"] = "cow"


def bubble(message: str, width: int = 40) -> str:
    lines = textwrap.wrap(message, width) or [""]
    size = max(len(line) for line in lines)
    if len(lines) == 1:
        body = [f"< {lines[0].ljust(size)} >"]
    else:
        edges = [("/", "\\"), *[("|", "|")] * (len(lines) - 2), ("\\", "/")]
        body = [f"{left} {line.ljust(size)} {right}"
                for (left, right), line in zip(edges, lines, strict=True)]
    return "\n".join([" " + "_" * (size + 2), *body, " " + "-" * (size + 2)])


@app.get("/")
async def root() -> dict[str, str]:
    return {"status": "ok", "partition": PARTITION}


@app.get("/hello-world")
async def hello_world() -> dict[str, str]:
    return {"endpoint": "/hello-world"}


@app.post("/cow-say", response_class=PlainTextResponse)
async def cow_say(body: CowSay) -> str:
    log.info("%s says %r", body.character, body.message[:60])
    return bubble(body.message) + CHARACTERS[body.character]


@app.get("/partition")
async def partition() -> dict[str, str]:
    return {"partition": PARTITION, "basePath": os.environ.get("ROOMHUB_BASE_PATH", "")}


@app.post("/digest")
async def digest(request: Request) -> dict[str, object]:
    """Read the request body as it streams in; answer its size and SHA-256."""
    hasher = hashlib.sha256()
    size = 0
    async for chunk in request.stream():
        hasher.update(chunk)
        size += len(chunk)
    return {"bytes": size, "sha256": hasher.hexdigest()}


@app.get("/bytes/{size}")
async def some_bytes(size: int) -> StreamingResponse:
    """Stream ``size`` bytes (in 64 KiB chunks)."""
    block = b"x" * 65536

    async def chunks() -> AsyncIterator[bytes]:
        left = size
        while left > 0:
            yield block[: min(left, len(block))]
            left -= len(block)

    return StreamingResponse(chunks(), media_type="application/octet-stream",
                             headers={"content-length": str(max(size, 0))})


@app.websocket("/ws")
async def ws_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            elif message.get("bytes") is not None:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        return
