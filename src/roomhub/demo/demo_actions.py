"""The demo's actions API: a handler that streams progress, a process that
broadcasts a counter, and the session and scope in use.

Served by the embedded demo (``[actions] api = "roomhub.demo.demo_actions:API"``)
and shown by the ``/actions-demo`` page.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, Field

from roomhub.actions import ActionsAPI, Stream

API = ActionsAPI()


class ProgressIn(BaseModel):
    steps: int = Field(default=10, ge=1, le=100)
    delay: float = Field(default=0.3, ge=0, le=5, description="Seconds per step.")


@API.action("demo.progress")
async def progress(output: Stream, data: ProgressIn, *, scope: dict[str, Any]) -> str:
    """Stream ``{"step", "of"}`` once per step, then return a summary (the last frame)."""
    scope["progress_runs"] = scope.get("progress_runs", 0) + 1
    for step in range(1, data.steps + 1):
        await asyncio.sleep(data.delay)
        output.send({"step": step, "of": data.steps})
    return f"done: {data.steps} steps"


@API.action("demo.visit")
def visit(output: Stream, data: Any, *, session: dict[str, Any], scope: dict[str, Any]) -> dict[str, Any]:
    """Count this client's visits (session) and everyone's (scope).

    A plain function: it runs in the hub's thread pool.
    """
    session["visits"] = session.get("visits", 0) + 1
    scope["visits"] = scope.get("visits", 0) + 1
    return {"mine": session["visits"], "everyone": scope["visits"], "name": session.get("name")}


@API.action("demo.name")
async def set_name(output: Stream, data: str, *, session: dict[str, Any]) -> str:
    """Remember a name in the session: it survives a reconnect, not the session timeout."""
    session["name"] = data[:40]
    return session["name"]


@API.action("demo.echo")
async def echo(output: Stream, data: Any) -> Any:
    return data


@API.process("counter")
async def counter(output: Any, *, scope: dict[str, Any], sessions: Any) -> None:
    """Broadcast a counter every second, with the number of live sessions."""
    n = 0
    while True:
        await asyncio.sleep(1)
        n += 1
        scope["counter"] = n
        output.send("tick", {"counter": n, "sessions": len(sessions)})
