"""Where an idle document connection's memory goes: tracemalloc in a hub serving ``/yjs``.

A hub with the documents face (SQLite store) runs in this process, on uvloop as
``roomhub serve`` does, with :mod:`tracemalloc` tracing; the Node load generator
of ``documents_bench.py`` (``idle`` mode) connects ``--idle`` clients over rooms
of 100, each synced (sync step 1 and 2 exchanged) and then idle. The Python
heap grown by those connections is divided by their number and broken down by
the line that allocated it (``--top`` lines), and the live objects of the
connection types are counted.

What tracemalloc sees is what Python allocated: not what C libraries
allocate themselves (uvloop's transports and libuv handles, pycrdt's Rust
documents) nor the allocator's own overhead, which RSS (the idle scenario of
``documents_bench.py``) includes. It depends on neither timing nor load, so it
is the figure to compare changes by on a shared machine.

Run: ``python bench/documents_idle_memory.py [--idle 2000] [--top 25]``. Prints a table, then
JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

from _common import free_port, write_config
from documents_bench import HERE, HUB_TOML


async def idle_clients(port: int, idle: int, connected: asyncio.Future[int],
                       release: asyncio.Event) -> None:
    """Run the load generator's idle mode: ``connected`` gets the count once every client is
    synced; the clients leave when ``release`` is set."""
    opts = {"url": f"ws://127.0.0.1:{port}/yjs", "mode": "idle", "budget": 300,
            "rooms": idle // 100, "clients": 100}
    gen = await asyncio.create_subprocess_exec(
        "node", str(HERE / "documents_load.mjs"), json.dumps(opts),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=HERE)
    assert gen.stdout is not None and gen.stdin is not None
    async for line in gen.stdout:
        event = json.loads(line)
        if event.get("event") == "ready":
            connected.set_result(int(event["connected"]))
            await release.wait()
            gen.stdin.write(b"stop\n")
            await gen.stdin.drain()
    await gen.wait()


def counts() -> dict[str, int]:
    """Live objects the garbage collector tracks, by type name."""
    found: dict[str, int] = {}
    for obj in gc.get_objects():
        name = type(obj).__qualname__
        found[name] = found.get(name, 0) + 1
    return found


async def measure(idle: int, top: int) -> dict[str, Any]:
    import uvicorn

    from roomhub.app import server_config
    from roomhub.config import load_config
    from roomhub.hub import Hub

    with tempfile.TemporaryDirectory(prefix="roomhub-idle-") as tmp:
        config = load_config(write_config(Path(tmp), HUB_TOML))
        config.server.data_dir = Path(tmp) / "data"
        port = free_port()
        server = uvicorn.Server(server_config(Hub(config), host="127.0.0.1", port=port, log_level="warning"))
        serving = asyncio.create_task(server.serve())
        while not server.started and not serving.done():  # noqa: ASYNC110 (uvicorn has no start-up event)
            await asyncio.sleep(0.01)
        if serving.done():
            serving.result()
            raise RuntimeError("the hub stopped during start-up")
        loop = asyncio.get_running_loop()
        # Warm up: a first room and connection make the code paths' one-time objects.
        connected: asyncio.Future[int] = loop.create_future()
        release = asyncio.Event()
        warm = asyncio.create_task(idle_clients(port, 100, connected, release))
        await connected
        release.set()
        await warm
        await asyncio.sleep(0.5)
        gc.collect()
        before = tracemalloc.take_snapshot()
        objects_before = counts()
        connected = loop.create_future()
        release = asyncio.Event()
        clients = asyncio.create_task(idle_clients(port, idle, connected, release))
        n = await connected
        await asyncio.sleep(1.0)  # every client's last frame handled
        gc.collect()
        after = tracemalloc.take_snapshot()
        objects_after = counts()
        release.set()
        await clients
        server.should_exit = True
        await serving
    filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
    diff = after.filter_traces(filters).compare_to(before.filter_traces(filters), "traceback")
    total = sum(d.size_diff for d in diff)
    lines = [
        {"where": [f"{f.filename}:{f.lineno}" for f in d.traceback],
         "bytes_per_connection": d.size_diff / n, "blocks_per_connection": d.count_diff / n}
        for d in sorted(diff, key=lambda d: -d.size_diff)[:top]
    ]
    return {
        "connections": n,
        "python_bytes_per_connection": total / n,
        "objects_per_connection": {
            name: round((count - objects_before.get(name, 0)) / n, 2)
            for name, count in sorted(objects_after.items(), key=lambda kv: kv[0])
            if count - objects_before.get(name, 0) >= n / 2
        },
        "top": lines,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=2000, help="idle clients (multiple of 100)")
    parser.add_argument("--top", type=int, default=25, help="allocating lines shown")
    parser.add_argument("--frames", type=int, default=1,
                        help="frames kept per allocation (more: each line's callers shown too)")
    args = parser.parse_args()
    tracemalloc.start(args.frames)
    try:
        import uvloop
    except ImportError:
        print("uvloop missing: measuring on asyncio's own loop", file=sys.stderr)
        result = asyncio.run(measure(args.idle, args.top))
    else:
        result = uvloop.run(measure(args.idle, args.top))
    print(f"\n{result['connections']} idle /yjs connections: "
          f"{result['python_bytes_per_connection']:.0f} bytes of Python heap each")
    print(f"objects per connection: {result['objects_per_connection']}")
    print(f"{'bytes/conn':>10} {'blocks/conn':>11}  where")
    for line in result["top"]:
        where = "\n                         <- ".join(reversed(line["where"]))
        print(f"{line['bytes_per_connection']:10.1f} {line['blocks_per_connection']:11.2f}  {where}")
    print(json.dumps({"options": vars(args), **result}, indent=1))


if __name__ == "__main__":
    main()
