"""Idle connections: hub memory per connection, 1000 connections spread over 100 rooms.

For each variant, a fresh hub (so that memory freed by one variant does not
flatter the next) serves one page:

- ``bare``: a page without executors (the cost of a connection and a room);
- ``always``: a page with one cheap ``always`` executor (``sleep``), so
  each room also holds a running program, its pipes and its reader tasks;
- ``reference``: ``bench/pages_reference.py``, a bare ``websockets`` server
  with the same per-connection queue and writer task (the peer: what the
  WebSocket library alone costs).

After a warm-up (a few rooms opened and closed, so lazy imports and caches
are paid), the hub's RSS and USS (psutil) are read; ``--connections``
``websockets`` clients then join ``--rooms`` rooms round-robin and wait for
their ``joined`` frame; after ``--settle`` seconds the hub's memory is read
again, with its open files and its children's memory. The clients then
leave and, once every room is torn down, memory is read again. This is
done ``--rounds`` times: memory kept after a close that grows round after
round is a leak, memory kept but reused is the allocator's.

With ``--before SRC`` (an earlier build's ``src`` folder, e.g. unpacked with
``git archive``) each hub variant is run again from it as ``VARIANT@before``,
right after the current one, and the ratio of RSS per connection is printed.

    python bench/pages_idle.py [--connections 1000] [--rooms 100] [--rounds 2]
                               [--variants bare,always,reference] [--before SRC]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import _common as c
import websockets

MiB = 1024 * 1024
EXECUTOR = "idle"
COMMAND = ["sleep", "100000"]


async def member(
    url: str, joined: asyncio.Event, leave: asyncio.Event, out: dict[str, Any]
) -> None:
    """A room member: joins, reads (and counts) whatever comes, closes when ``leave`` is set."""

    async def read(ws: Any) -> None:
        async for _ in ws:
            out["frames_after_join"] = out.get("frames_after_join", 0) + 1

    try:
        async with websockets.connect(url, compression=None, open_timeout=60) as ws:
            while True:
                frame = json.loads(await ws.recv())
                if (frame.get("message") or {}).get("type") == "joined":
                    break
            joined.set()
            reading = asyncio.create_task(read(ws))
            await leave.wait()
            if reading.done():  # the hub closed this idle connection
                out["closed_early"] = out.get("closed_early", 0) + 1
            reading.cancel()
    except Exception as exc:
        out.setdefault("errors", []).append(repr(exc))
    finally:
        joined.set()


async def settle(
    server: c.ServerProcess, rooms: int, fds: int | None, within: float = 60.0
) -> None:
    """Wait until the hub has ``rooms`` rooms, or (reference) is back to ``fds`` open files."""
    deadline = time.monotonic() + within
    state: Any = None
    while time.monotonic() < deadline:
        if isinstance(server, c.HubProcess):
            state = (await asyncio.to_thread(server.get_json, "/api/metrics"))["rooms"]
            if state.get("/idle", 0) == rooms:
                return
        else:
            assert server.ps is not None
            state = server.ps.num_fds()
            if fds is None or state <= fds:
                return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{server.name} did not settle: {state}")


def memory(hub: c.ServerProcess) -> dict[str, int]:
    children = hub.children()
    child_rss = 0
    for child in children:
        try:
            child_rss += child.memory_info().rss
        except c.psutil.NoSuchProcess:
            pass
    assert hub.ps is not None
    return {
        "rss": hub.rss(),
        "uss": hub.uss(),
        "fds": hub.ps.num_fds(),
        "children": len(children),
        "children_rss": child_rss,
    }


async def open_members(
    base: str,
    names: list[str],
    connections: int,
    batch: int,
    leave: asyncio.Event,
    out: dict[str, Any],
) -> tuple[list[asyncio.Task[None]], float]:
    """Open ``connections`` members, round-robin over ``names``, ``batch`` handshakes at a time."""
    tasks: list[asyncio.Task[None]] = []
    started = time.monotonic()
    for first in range(0, connections, batch):
        events = []
        for i in range(first, min(first + batch, connections)):
            event = asyncio.Event()
            url = f"{base}?roomName={names[i % len(names)]}&roomhub=1"
            tasks.append(asyncio.create_task(member(url, event, leave, out)))
            events.append(event)
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 120)
    return tasks, time.monotonic() - started


BEFORE = "@before"
"""Variant suffix: the same hub variant run from the ``--before`` source tree (an earlier build)."""


def server_for(variant: str, args: argparse.Namespace) -> c.ServerProcess:
    src = None
    if variant.endswith(BEFORE):
        variant, src = variant.removesuffix(BEFORE), args.before
    if variant == "reference":
        return c.ReferenceProcess(loop=args.loop)
    executors = {EXECUTOR: {"type": "always", "command": COMMAND}} if variant == "always" else {}
    toml = c.page_config(
        {"/idle": executors},
        limits={
            "max_connections": args.connections + 100,
            "max_clients_per_room": args.connections // args.rooms + 10,
            "max_rooms_per_namespace": args.rooms + 10,
        },
    )
    return c.HubProcess(toml, src=src)


async def run_variant(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rounds: list[dict[str, Any]] = []
    with server_for(variant, args) as server:
        base = f"{server.ws}/idle/ws"
        run_id = uuid.uuid4().hex[:6]
        warm = asyncio.Event()
        baseline_fds = memory(server)["fds"]
        tasks, _ = await open_members(
            base, [f"warm-{run_id}-{i}" for i in range(5)], 20, 20, warm, out
        )
        warm.set()
        await asyncio.gather(*tasks)
        await settle(server, 0, baseline_fds)
        await asyncio.sleep(args.settle)
        before = memory(server)
        for round_ in range(args.rounds):
            leave = asyncio.Event()
            names = [f"idle-{run_id}-{round_}-{i}" for i in range(args.rooms)]
            tasks, open_s = await open_members(
                base, names, args.connections, args.batch, leave, out
            )
            await settle(server, args.rooms, None)
            await asyncio.sleep(args.settle)
            opened = memory(server)
            counted = None
            if isinstance(server, c.HubProcess):
                counted = (await asyncio.to_thread(server.get_json, "/api/metrics"))["connections"]
            leave.set()
            await asyncio.gather(*tasks)
            await settle(server, 0, before["fds"])
            await asyncio.sleep(args.settle)
            rounds.append(
                {
                    "open_seconds": open_s,
                    "open": opened,
                    "after_close": memory(server),
                    "server_counted_connections": counted,
                }
            )
        problems = c.log_problems(server.log()) if isinstance(server, c.HubProcess) else {}
    n = args.connections
    opened = rounds[0]["open"]
    return {
        "variant": variant,
        "connections": n,
        "rooms": args.rooms,
        "before": before,
        "rounds": rounds,
        "open_seconds": rounds[0]["open_seconds"],
        "rss_open": opened["rss"],
        "rss_per_connection_bytes": (opened["rss"] - before["rss"]) / n,
        "uss_per_connection_bytes": (opened["uss"] - before["uss"]) / n,
        "fds_per_connection": (opened["fds"] - before["fds"]) / n,
        "children": opened["children"],
        "children_rss_per_room_bytes": opened["children_rss"] / args.rooms,
        "rss_kept_after_each_close_bytes": [
            r["after_close"]["rss"] - before["rss"] for r in rounds
        ],
        "frames_after_join": out.get("frames_after_join", 0),
        "closed_early": out.get("closed_early", 0),
        "client_errors": out.get("errors", [])[:5],
        "client_error_count": len(out.get("errors", [])),
        "hub_log_problems": problems,
    }


async def main(args: argparse.Namespace) -> None:
    # Each connection takes a file descriptor here and one in the hub (which inherits the limit).
    limit = c.raise_open_files(2 * args.connections + 512)
    variants = args.variants.split(",")
    if args.before is not None:  # each hub variant, then the same from the earlier build
        variants = [x for v in variants for x in ((v, v + BEFORE) if v != "reference" else (v,))]
    results = [await run_variant(v, args) for v in variants]
    rows = [
        [
            r["variant"],
            r["connections"],
            r["rooms"],
            r["before"]["rss"] / MiB,
            r["rss_open"] / MiB,
            r["rss_per_connection_bytes"] / 1024,
            r["uss_per_connection_bytes"] / 1024,
            r["fds_per_connection"],
            r["children"],
            r["children_rss_per_room_bytes"] / 1024,
            " / ".join(f"{x / MiB:.1f}" for x in r["rss_kept_after_each_close_bytes"]),
            r["open_seconds"],
        ]
        for r in results
    ]
    print(
        f"idle connections: {args.connections} over {args.rooms} rooms, "
        f"open-file limit {limit}; KiB = 1024 bytes"
    )
    c.report(
        "pages_idle",
        [
            "page",
            "conns",
            "rooms",
            "RSS before MiB",
            "RSS open MiB",
            "RSS KiB/conn",
            "USS KiB/conn",
            "fds/conn",
            "children",
            "child RSS KiB/room",
            "RSS kept after close MiB (per round)",
            "open s",
        ],
        rows,
        {"results": results, "machine": c.machine()},
    )
    by_name = {r["variant"]: r for r in results}
    if "reference" in by_name:
        ref = by_name["reference"]["rss_per_connection_bytes"]
        for name in ("bare", "always"):
            if name in by_name:
                ratio = by_name[name]["rss_per_connection_bytes"] / ref
                print(f"ratio {name}/reference, RSS per connection: {ratio:.2f}x")
    for name in ("bare", "always"):
        if name in by_name and name + BEFORE in by_name:
            before = by_name[name + BEFORE]["rss_per_connection_bytes"]
            ratio = by_name[name]["rss_per_connection_bytes"] / before
            print(f"ratio {name}/{name}{BEFORE}, RSS per connection: {ratio:.2f}x")
    if "bare" in by_name and "always" in by_name:
        extra = (by_name["always"]["rss_open"] - by_name["bare"]["rss_open"]) / args.rooms
        print(
            f"hub RSS per room for one always executor (always - bare): {extra / 1024:.1f} KiB "
            "(the program's own memory apart)"
        )
    for r in results:
        if r["client_error_count"]:
            print(
                f"{r['variant']}: {r['client_error_count']} client errors, "
                f"e.g. {r['client_errors']}"
            )
        if r["hub_log_problems"]:
            print(f"{r['variant']}:")
            c.print_log_problems(r["hub_log_problems"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument(
        "--variants",
        default="bare,always,reference",
        help="comma-separated: bare (page without executors), always (one sleep per room), "
        "reference (bare websockets server)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="open/close rounds (leak check)")
    parser.add_argument("--batch", type=int, default=50, help="handshakes in flight at once")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds before reading memory")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--before", type=Path, default=None,
                        help="source folder of an earlier build (e.g. from git archive): each hub "
                             "variant also runs from it, as VARIANT@before")
    arguments = parser.parse_args()
    c.run(main(arguments), arguments.loop)
