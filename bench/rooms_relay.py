"""A page room's member relayed through another hub of a cluster against a member on the holder.

Two hubs of one cluster (a private Redis, as the tests start it) serve a page
whose room runs ``cat``. Hub A holds the room (its first member joined there);
a second member joins through hub B, which relays it to hub A. Each member in
turn makes ``--count`` round trips, one at a time: a line to ``cat``'s stdin,
waiting until ``cat``'s echo of it comes back:

- ``holder``: the member on hub A (client, hub A, cat);
- ``relayed``: the member on hub B (client, hub B, hub A, cat, and back).

The two alternate for ``--rounds`` rounds. Prints the round trip (p50, p99,
ms) per member, the ratio relayed / holder, the hubs' CPU seconds per round
trip and what shared the machine's cores (the load average).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time

from _common import ROOT, HubProcess, machine, page_config, percentile, report

sys.path.insert(0, str(ROOT / "tests"))  # the tests' private Redis (tests/services.py)

from websockets.asyncio.client import connect


def config(redis_url: str) -> str:
    pages = {"/p": {"cat": {"type": "always", "command": ["cat"]}}}
    return page_config(pages) + f'\n[cluster]\nredis = "{redis_url}"\nprefix = "bench"\n'


async def round_trips(ws, count: int) -> list[float]:
    """``count`` lines through ``cat``, one at a time; each one's round trip in ms."""
    times = []
    for n in range(count):
        line = f"line-{n:06d}\n".encode()
        frame = json.dumps({"executor": "cat", "message": {"stdin": base64.b64encode(line).decode()}})
        started = time.perf_counter()
        await ws.send(frame)
        got = b""
        while line not in got:
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))["message"]
            if message.get("type") == "output":
                got += base64.b64decode(message.get("stdout") or "")
        times.append((time.perf_counter() - started) * 1000)
    return times


async def main(args: argparse.Namespace) -> None:
    from services import running, start_redis

    with (
        running("roomhub-bench-redis-", start_redis) as redis_server,
        HubProcess(config(redis_server.url)) as a,
        HubProcess(config(redis_server.url)) as b,
    ):
        async with connect(f"{a.ws}/p/ws?roomName=bench", max_size=None) as on_a:
            await round_trips(on_a, 5)  # hub A holds the room from here
            async with connect(f"{b.ws}/p/ws?roomName=bench", max_size=None) as on_b:
                await round_trips(on_b, 5)
                totals: dict[str, dict[str, list[float] | float]] = {
                    s: {"latencies": [], "cpu": 0.0, "cpu_b": 0.0} for s in ("holder", "relayed")}
                for _ in range(args.rounds):
                    for setup, ws in (("holder", on_a), ("relayed", on_b)):
                        other = on_b if ws is on_a else on_a
                        cpu, cpu_b = a.cpu_seconds() + b.cpu_seconds(), b.cpu_seconds()
                        drain = asyncio.create_task(_drain(other))  # the other member reads too
                        totals[setup]["latencies"] += await round_trips(ws, args.count)  # type: ignore[operator]
                        drain.cancel()
                        totals[setup]["cpu"] += a.cpu_seconds() + b.cpu_seconds() - cpu  # type: ignore[operator]
                        totals[setup]["cpu_b"] += b.cpu_seconds() - cpu_b  # type: ignore[operator]
    figures = {}
    for setup, total in totals.items():
        lat = sorted(total["latencies"])  # type: ignore[arg-type]
        figures[setup] = {"round_trips": len(lat), "p50_ms": percentile(lat, 50),
                          "p99_ms": percentile(lat, 99),
                          "cpu_us_per_round_trip": 1e6 * total["cpu"] / max(1, len(lat)),  # type: ignore[operator]
                          "hub_b_cpu_us_per_round_trip": 1e6 * total["cpu_b"] / max(1, len(lat))}  # type: ignore[operator]
    rows = [[s, f["round_trips"], f"{f['p50_ms']:.2f}", f"{f['p99_ms']:.2f}",
             f"{f['cpu_us_per_round_trip']:.0f}", f"{f['hub_b_cpu_us_per_round_trip']:.0f}"]
            for s, f in figures.items()]
    ratios = {k: figures["relayed"][k] / figures["holder"][k]
              for k in ("p50_ms", "p99_ms", "cpu_us_per_round_trip")}
    where = machine()
    report("rooms_relay", ["member", "round trips", "p50 ms", "p99 ms", "hubs' CPU us/round trip",
                          "hub B's"], rows,
           {"figures": figures, "ratios": ratios, "count": args.count, "rounds": args.rounds, **where})
    print(f"relayed / holder: p50 {ratios['p50_ms']:.2f}x, p99 {ratios['p99_ms']:.2f}x, "
          f"hubs' CPU per round trip {ratios['cpu_us_per_round_trip']:.2f}x")
    print(f"shared the machine's {where['cpus']} cores: 2 hubs, cat, Redis and this client; "
          f"load average {where['load_avg']}")


async def _drain(ws) -> None:
    while True:
        await ws.recv()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=500, help="round trips per member and round (500)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    asyncio.run(main(parser.parse_args()))
