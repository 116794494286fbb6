"""The actions API of the cluster tests of processes: an async process and a thread process, each
writing ``start KIND PID`` and ``stop KIND PID`` lines to the file ``ROOMHUB_TEST_RUNS`` names,
the async one sending its hub's pid to every client every 50 ms."""

from __future__ import annotations

import asyncio
import os
import threading

from roomhub.actions import ActionsAPI

API = ActionsAPI()


def note(what: str) -> None:
    with open(os.environ["ROOMHUB_TEST_RUNS"], "a") as runs:
        runs.write(f"{what} {os.getpid()}\n")


@API.process("beacon")
async def beacon(output, *, scope):
    note("start task")
    try:
        n = 0
        while True:
            n += 1
            scope["beats"] = n
            output.send("beat", {"pid": os.getpid(), "n": n})
            await asyncio.sleep(0.05)
    finally:  # cancelled: the hub stopped it
        note("stop task")


@API.process("watch")
def watch(output, *, stop: threading.Event):
    note("start thread")
    while not stop.wait(0.05):
        pass
    note("stop thread")


@API.action("beats")
async def beats(output, data, *, scope):
    return scope.get("beats")
