"""Room cold start with the ``process`` runtime: join to the first output of an ``always`` executor.

For each of ``--rooms`` fresh room names, a ``websockets`` client opens
``<page>/ws?roomName=<fresh>&roomhub=1`` and times, from just before the TCP connect:

- ``handshake``: the WebSocket upgrade accepted;
- ``joined``: the hub's ``joined`` frame (room created, executors launched);
- ``first output``: the first ``output`` frame of the ``always`` executor
  (``sh -c 'echo ready; exec sleep 1000'``): the figure the target is about
  (median under 50 ms).

It then closes the socket and waits until the hub has torn the room down
(``/api/metrics``), so rooms do not overlap. In the same loop iteration, and
on the same event loop implementation as the hub (uvloop), it measures the
floor: the same command started directly with
``asyncio.create_subprocess_exec`` until its first line is read — once plain
and once with the hub's own ``preexec_fn`` (new session and rlimits), which
forces a fork+exec instead of a faster spawn. Ratios are hub / floor.

A room of a page without executors (``/empty``) gives the cost of the
handshake, room creation and the joined frame alone.

Then ``--bursts`` times, ``--burst`` fresh rooms are opened at once (a class
arriving together), against a burst of as many direct starts.

    python bench/pages_coldstart.py [--rooms 300] [--warmup 5] [--burst 20] [--bursts 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from typing import Any

import _common as c
import websockets

from roomhub.config import ResourceLimits
from roomhub.runtimes.process import rlimit_setter

COMMAND = ["sh", "-c", "echo ready; exec sleep 1000"]
STEP_TIMEOUT = 15.0  # seconds for one room; a slower room fails the run


async def join_room(url: str, executor: str | None) -> dict[str, float]:
    """Open a room socket; ms to handshake, joined frame and (if ``executor``) first output."""
    started = time.perf_counter()
    out: dict[str, float] = {}
    async with websockets.connect(url, max_size=None, compression=None) as ws:
        out["handshake"] = (time.perf_counter() - started) * 1000
        while True:
            frame = json.loads(await ws.recv())
            message = frame.get("message") or {}
            now = (time.perf_counter() - started) * 1000
            if frame.get("executor") is None and message.get("type") == "joined":
                out["joined"] = now
                if executor is None:
                    break
            elif frame.get("executor") == executor and message.get("type") == "output":
                out["first_output"] = now
                break
            elif message.get("type") in ("error", "errored"):
                raise RuntimeError(f"hub answered {frame}")
    return out


async def wait_no_rooms(hub: c.HubProcess, namespace: str, within: float = STEP_TIMEOUT) -> None:
    """Wait until the hub has torn down every room of ``namespace``."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        metrics = await asyncio.to_thread(hub.get_json, "/api/metrics")
        if not metrics["rooms"].get(namespace):
            return
        await asyncio.sleep(0.005)
    raise RuntimeError(f"rooms of {namespace} still alive after {within} s")


async def direct_start(preexec: bool, started: float | None = None) -> float:
    """Milliseconds to start :data:`COMMAND` with asyncio and read its first line (the floor).

    ``started`` (a ``perf_counter`` value) is the origin of the time; default: now.
    """
    kwargs: dict[str, Any] = {}
    if preexec:
        kwargs["preexec_fn"] = rlimit_setter(ResourceLimits())
    if started is None:
        started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *COMMAND,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        **kwargs,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), STEP_TIMEOUT)
        elapsed = (time.perf_counter() - started) * 1000
        if line != b"ready\n":
            raise RuntimeError(f"unexpected first line {line!r}")
    finally:
        proc.kill()
        await proc.wait()
    return elapsed


async def main(args: argparse.Namespace) -> None:
    toml = c.page_config(
        {
            "/cold": {"ready": {"type": "always", "command": COMMAND}},
            "/empty": {},
        }
    )
    series: dict[str, list[float]] = {
        k: []
        for k in (
            "handshake",
            "joined",
            "first_output",
            "empty_joined",
            "floor",
            "floor_preexec",
            "burst_first_output",
            "burst_floor",
        )
    }
    with c.HubProcess(toml) as hub:
        run_id = uuid.uuid4().hex[:6]
        for i in range(args.warmup + args.rooms):
            name = f"cold-{run_id}-{i}"
            cold = await asyncio.wait_for(
                join_room(f"{hub.ws}/cold/ws?roomName={name}&roomhub=1", "ready"), STEP_TIMEOUT
            )
            await wait_no_rooms(hub, "/cold")
            empty = await asyncio.wait_for(
                join_room(f"{hub.ws}/empty/ws?roomName={name}&roomhub=1", None), STEP_TIMEOUT
            )
            await wait_no_rooms(hub, "/empty")
            floor = await direct_start(preexec=False)
            floor_preexec = await direct_start(preexec=True)
            if i < args.warmup:
                continue
            for key in ("handshake", "joined", "first_output"):
                series[key].append(cold[key])
            series["empty_joined"].append(empty["joined"])
            series["floor"].append(floor)
            series["floor_preexec"].append(floor_preexec)
        for b in range(args.bursts if args.burst > 0 else 0):
            urls = [f"{hub.ws}/cold/ws?roomName=burst-{run_id}-{b}-{k}&roomhub=1" for k in range(args.burst)]
            results = await asyncio.wait_for(
                asyncio.gather(*(join_room(u, "ready") for u in urls)), STEP_TIMEOUT * 2
            )
            series["burst_first_output"] += [r["first_output"] for r in results]
            await wait_no_rooms(hub, "/cold")
            burst_started = time.perf_counter()  # like the clients': one origin for the whole burst
            series["burst_floor"] += await asyncio.gather(
                *(direct_start(preexec=False, started=burst_started) for _ in range(args.burst))
            )
        hub_rss = hub.rss()
        log = hub.log()

    stats = {k: c.summary(v) for k, v in series.items() if v}
    labels = {
        "handshake": "hub: WebSocket handshake",
        "joined": "hub: joined frame (room created)",
        "first_output": "hub: first output of always",
        "empty_joined": "hub: joined, page without executors",
        "floor": "floor: create_subprocess_exec",
        "floor_preexec": "floor: + hub's preexec_fn",
        "burst_first_output": f"burst of {args.burst}: hub first output",
        "burst_floor": f"burst of {args.burst}: floor",
    }
    rows = [
        [labels[k], s["n"], s["min"], s["median"], s["p95"], s["max"]] for k, s in stats.items()
    ]
    med = stats["first_output"]["median"]
    ratio = med / stats["floor"]["median"]
    ratio_preexec = med / stats["floor_preexec"]["median"]
    print(
        f"room cold start, {args.rooms} fresh rooms (+{args.warmup} warm-up), client loop "
        f"{c.loop_name(args.loop)}, milliseconds"
    )
    c.report(
        "pages_coldstart",
        ["series (ms)", "n", "min", "median", "p95", "max"],
        rows,
        {
            "unit": "ms",
            "rooms": args.rooms,
            "stats": stats,
            "ratio_median_vs_floor": ratio,
            "ratio_median_vs_floor_preexec": ratio_preexec,
            "target_median_ms": 50.0,
            "target_met": med < 50.0,
            "burst": args.burst,
            "hub_rss_bytes": hub_rss,
            "hub_log_problems": c.log_problems(log),
            "client_loop": c.loop_name(args.loop),
            "machine": c.machine(),
        },
    )
    print(
        f"ratio hub/floor (median first output): {ratio:.2f}x plain, {ratio_preexec:.2f}x with "
        f"preexec_fn; target median < 50 ms: {'met' if med < 50 else 'NOT met'} ({med:.1f} ms)"
    )
    if stats.get("burst_floor"):
        print(
            f"ratio hub/floor in bursts (median): "
            f"{stats['burst_first_output']['median'] / stats['burst_floor']['median']:.2f}x"
        )
    c.print_log_problems(c.log_problems(log))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rooms", type=int, default=300, help="fresh rooms measured one after the other"
    )
    parser.add_argument("--warmup", type=int, default=5, help="rooms run first and not counted")
    parser.add_argument("--burst", type=int, default=20, help="rooms opened at once (0: no burst)")
    parser.add_argument("--bursts", type=int, default=5, help="how many bursts")
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="event loop of this client and of the floor (the hub runs uvloop)",
    )
    arguments = parser.parse_args()
    c.run(main(arguments), arguments.loop)
