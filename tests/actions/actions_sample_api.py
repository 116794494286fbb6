"""The API the actions tests serve: every kind of handler and process."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from pydantic import BaseModel

from roomhub.actions import ActionsAPI, StreamClosed

API = ActionsAPI()
EVENTS: dict[str, Any] = {"sync_cancel_seen": threading.Event()}


async def echo(output, data):
    return data


def count(output, data, **kwargs):
    """Igor-style plain function: three data frames, then close."""
    for i in range(3):
        output.send(i)


API.add_all({"echo": echo, "count": count, "nested": {"deeper": {"echo": echo}}})


@API.action("slow")
async def slow(output, data):
    await asyncio.sleep(float(data or 0.5))
    return "done"


@API.action("slow_sync")
def slow_sync(output, data):
    time.sleep(float(data or 0.5))
    return "done"


@API.action
async def progress(output, data):
    for i in range(int(data)):
        output.send({"progress": i})
        await asyncio.sleep(0)
    return {"total": int(data)}


@API.action
async def gen(output, data):
    for i in range(3):
        yield i * 10


@API.action
async def forever(output, data, *, scope):
    scope["forever_started"] = scope.get("forever_started", 0) + 1
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        scope["forever_cancelled"] = scope.get("forever_cancelled", 0) + 1
        raise


@API.action
def forever_sync(output, data):
    while True:
        try:
            output.send("tick")
        except StreamClosed:
            EVENTS["sync_cancel_seen"].set()
            return
        time.sleep(0.02)


@API.action
async def fail(output, data):
    output.send("before")
    raise ValueError("boom: " + str(data))


@API.action
def fail_sync(output, data):
    raise RuntimeError("sync boom")


@API.action
def shutdown(output, data):
    """Igor's documented Electron shutdown recipe."""
    raise SystemExit(0)


@API.action
async def shutdown_async(output, data):
    raise SystemExit(0)


@API.action
async def not_json(output, data):
    return {1, 2, 3}


@API.action
async def send_error(output, data):
    output.send_error("soft error")
    return "after"


class Point(BaseModel):
    x: int
    y: int


@API.action
async def add(output, data: Point):
    return data.x + data.y


@API.action("session.set")
async def session_set(output, data, *, session):
    session.update(data)
    return dict(session)


@API.action("session.get")
async def session_get(output, data, *, session):
    return dict(session)


@API.action("scope.incr")
async def scope_incr(output, data, *, scope):
    scope["n"] = scope.get("n", 0) + 1
    return scope["n"]


@API.action("scope.get")
def scope_get(output, data, *, scope):
    return scope.get(data)


@API.action("sessions.count")
async def sessions_count(output, data, *, scope):
    return len(scope["sessions"])


@API.action("sessions.data")
async def sessions_data(output, data, *, scope):
    """The session data the processes see under the id ``data``."""
    return scope["sessions"][data]


@API.action("process.say")
async def process_say(output, data, *, scope, session):
    """Ask the async process to send ``data`` to everyone or to ``data['to']``."""
    await scope["say_queue"].put(data)
    return "queued"


@API.process("announcer")
async def announcer(output, *, scope, sessions):
    scope["sessions"] = sessions
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope["say_queue"] = queue
    while True:
        msg = await queue.get()
        ok = output.send("said", msg["text"], client_id=msg.get("to"))
        scope["last_send_ok"] = ok


class Ticker(threading.Thread):
    """Igor-style process: a Thread with injected attributes, looping forever."""

    def run(self):
        n = 0
        self.scope["ticker"] = self.process_id
        while True:
            n += 1
            self.output.send(action="tick", data={"n": n})
            time.sleep(0.05)


API.add_process("ticker", Ticker)  # a class: a new thread per hub
