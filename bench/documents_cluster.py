"""A document room served by two hubs (replication over Redis pub/sub) against one hub, same run.

Two hubs of one cluster (a private Redis and PostgreSQL, as the tests start
them) serve ``--rooms`` documents. In each room a writer sends one small text
edit (a y-websocket update frame) every ``1 / --rate`` seconds and a reader
measures when it arrives:

- ``same``: writer and reader on hub A (the update goes through one hub);
- ``cross``: writer on hub A, reader on hub B (hub A publishes it to the
  document's channel, hub B receives it and sends it).

The two set-ups alternate for ``--rounds`` rounds of ``--seconds`` each (other
rooms each round, so that every round starts fresh). Every writer waits until
it is synced and every other writer is too (the room open on hub A: loaded
from the store, its stream replayed), then starts at a random phase of its
period (as the documents benchmark's paced clients: no bursts in step); the
CPU is measured from then on, and this client collects no garbage during a
round (a full collection here would delay every receipt it timestamps).
``--cold``: writers send at once instead, before hub A has the room open in
``cross`` (``same`` finds it open: the reader opened it), so the first updates
wait for the opening. Prints the delivery latency (p50, p99, ms) per set-up,
the ratio cross / same, the hubs' CPU seconds per delivered update (A + B),
the writers' joins, and what shared the machine's cores (both hubs, Redis,
PostgreSQL, this client: the load average).

``--hubs N``: documents fan-out at the highest rate instead (the documents
benchmark's throughput scenario, ``documents_bench.py``'s Node load generator:
``--rooms`` rooms of ``--clients`` clients, each keeping ``--window`` edits in
flight), against one hub alone (no ``[cluster]``) and against N hubs of a
cluster with the clients spread over them round-robin (as haproxy spreads
them: a room's clients on every hub), alternating for ``--rounds`` rounds,
each with fresh hubs and a fresh PostgreSQL database (``--spread rooms``: each
room's clients on one hub instead, as a balancer hashing the room name would
put them). ``--generators G`` (default 1): the rooms split over G Node load
generators running at once (one saturates at about one core: beyond that, the
figures would show the generator, not the hubs), each a contiguous slice of
them with the names and client ids one generator would give them (the same
hub for every client); all connect, then start together, so that they measure
over the same seconds. Prints the updates delivered per second (summed over
the generators), latency p50/p99 (over every generator's samples), hub CPU
per delivered update (every hub's, summed, from the first generator's
measuring to the last's, over the updates all delivered), the hubs' and the
generators' cores (summed) and the ratios N hubs / 1 hub.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import re
import sys
import time

from _common import ROOT, HubProcess, machine, percentile, report

sys.path.insert(0, str(ROOT / "tests"))  # the tests' private Redis and PostgreSQL (tests/services.py)

from pycrdt import Doc, Text
from websockets.asyncio.client import connect

from roomhub.documents import protocol as p

MARK = re.compile(rb"~(\d{9})~")


def config(redis_url: str, dsn: str) -> str:
    return (
        '[server]\nhost = "127.0.0.1"\n\n[documents]\nstore = "postgres"\ngrace_period = 30\n\n'
        f'[documents.postgres]\ndsn = "{dsn}"\n\n[cluster]\nredis = "{redis_url}"\nprefix = "bench"\n'
    )


async def reader(url: str, arrived: dict[int, float], ready: asyncio.Event, stop: asyncio.Event) -> None:
    async with connect(url, max_size=None) as ws:
        await ws.send(p.sync_step1(p.EMPTY_STATE_VECTOR))
        while not stop.is_set():
            try:
                frame = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            assert isinstance(frame, bytes)
            if frame[:2] == bytes([p.MSG_SYNC, 1]):  # sync step 2: synced
                ready.set()
            if frame[:2] == bytes([p.MSG_SYNC, p.SYNC_UPDATE]):
                now = time.perf_counter()
                for seq in MARK.findall(frame):
                    arrived.setdefault(int(seq), now)


async def writer(url: str, rate: float, seconds: float, sent: dict[int, float], base: int,
                 joins: list[float], gate: asyncio.Barrier | None) -> None:
    """Send ``rate`` timed updates/s for ``seconds``; with a ``gate``, only once synced and every
    other writer is too (steady state: the room is open on the writer's hub, loaded from the store
    and its stream replayed, before the first timed update and the CPU measurement)."""
    doc = Doc()
    text = doc.get("text", type=Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    joining = time.perf_counter()
    async with connect(url, max_size=None) as ws:
        await ws.send(p.sync_step1(p.EMPTY_STATE_VECTOR))
        if gate is not None:
            while (await asyncio.wait_for(ws.recv(), 30))[:2] != bytes([p.MSG_SYNC, 1]):
                pass
            joins.append((time.perf_counter() - joining) * 1000)
            await gate.wait()
            # each at its own phase, as the documents benchmark's paced clients: no bursts in step
            await asyncio.sleep(random.uniform(0, 1 / rate))
        period = 1 / rate
        start = time.perf_counter()
        n = 0
        while time.perf_counter() - start < seconds:
            seq = base + n
            text += f"~{seq:09d}~"
            sent[seq] = time.perf_counter()
            await ws.send(p.sync_update(updates.pop()))
            n += 1
            await asyncio.sleep(max(0.0, start + n * period - time.perf_counter()))
        await asyncio.sleep(0.5)  # the last updates arrive


async def one_round(a: HubProcess, b: HubProcess, setup: str, rooms: int, round_no: int,
                    args: argparse.Namespace) -> dict[str, float]:
    sent: dict[int, float] = {}
    arrived: dict[int, float] = {}
    joins: list[float] = []
    stop = asyncio.Event()
    readers, ready = [], []
    reader_hub = a if setup == "same" else b
    for r in range(rooms):
        event = asyncio.Event()
        ready.append(event)
        room = f"r{round_no}-{setup}-{r}"
        readers.append(asyncio.create_task(reader(f"{reader_hub.ws}/yjs/{room}", arrived, event, stop)))
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready)), 30)
    gate = None if args.cold else asyncio.Barrier(rooms + 1)
    writers = asyncio.gather(*(
        writer(f"{a.ws}/yjs/r{round_no}-{setup}-{r}", args.rate, args.seconds, sent, r * 10**6,
               joins, gate)
        for r in range(rooms)
    ))
    if gate is not None:
        await asyncio.wait_for(gate.wait(), 30)  # every writer synced: the rooms are open
    cpu_a, cpu_b = a.cpu_seconds(), b.cpu_seconds()
    await writers
    cpu_a, cpu_b = a.cpu_seconds() - cpu_a, b.cpu_seconds() - cpu_b
    stop.set()
    await asyncio.gather(*readers)
    latencies = [(arrived[s] - t) * 1000 for s, t in sent.items() if s in arrived]
    return {"sent": len(sent), "delivered": len(latencies), "latencies": latencies, "cpu": cpu_a + cpu_b,
            "cpu_a": cpu_a, "cpu_b": cpu_b,
            "joins": joins}


async def main(args: argparse.Namespace) -> None:
    from services import running, start_postgres, start_redis

    with (
        running("roomhub-bench-redis-", start_redis) as redis_server,
        running("roomhub-bench-postgres-", start_postgres) as pg,
        HubProcess(config(redis_server.url, pg.dsn())) as a,
        HubProcess(config(redis_server.url, pg.dsn())) as b,
    ):
        totals: dict[str, dict[str, list[float] | float]] = {
            s: {"latencies": [], "sent": 0, "delivered": 0, "cpu": 0.0, "cpu_a": 0.0, "cpu_b": 0.0,
                "joins": []}
            for s in ("same", "cross")
        }
        for round_no in range(args.rounds):
            for setup in ("same", "cross"):
                # No collection during a round: a full one in this client (tens of ms) would delay
                # every receipt it timestamps meanwhile, the hubs' doing for nothing.
                gc.collect()
                gc.disable()
                try:
                    result = await one_round(a, b, setup, args.rooms, round_no, args)
                finally:
                    gc.enable()
                total = totals[setup]
                total["latencies"] += result["latencies"]  # type: ignore[operator]
                total["joins"] += result["joins"]  # type: ignore[operator]
                for key in ("sent", "delivered", "cpu", "cpu_a", "cpu_b"):
                    total[key] += result[key]  # type: ignore[operator]
    figures = {}
    for setup, total in totals.items():
        lat = sorted(total["latencies"])  # type: ignore[arg-type]
        figures[setup] = {
            "sent": total["sent"], "delivered": total["delivered"],
            "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99),
            "cpu_us_per_update": 1e6 * total["cpu"] / max(1, total["delivered"]),  # type: ignore[operator]
            "hub_a_cpu_us": 1e6 * total["cpu_a"] / max(1, total["delivered"]),  # type: ignore[operator]
            "hub_b_cpu_us": 1e6 * total["cpu_b"] / max(1, total["delivered"]),  # type: ignore[operator]
            # the writers' joins, connect to synced: "cross" opens the room on the writer's hub
            # (store, stream replay, state request), "same" finds it open (the reader opened it)
            "join_p50_ms": percentile(sorted(total["joins"]), 50) if total["joins"] else None,  # type: ignore[arg-type]
            "join_max_ms": max(total["joins"]) if total["joins"] else None,  # type: ignore[arg-type,type-var]
        }
    rows = [[s, f["sent"], f["delivered"], f"{f['p50_ms']:.2f}", f"{f['p99_ms']:.2f}",
             f"{f['cpu_us_per_update']:.0f} ({f['hub_a_cpu_us']:.0f} + {f['hub_b_cpu_us']:.0f})",
             _ms(f["join_p50_ms"]), _ms(f["join_max_ms"])]
            for s, f in figures.items()]
    ratios = {k: figures["cross"][k] / figures["same"][k] for k in ("p50_ms", "p99_ms", "cpu_us_per_update")}
    where = machine()
    report("documents_cluster", ["setup", "sent", "delivered", "p50 ms", "p99 ms",
                                 "hub CPU us/update (A + B)", "writer join p50 ms", "writer join max ms"],
           rows, {"figures": figures, "ratios": ratios, "rooms": args.rooms, "rate": args.rate,
                  "seconds": args.seconds, "rounds": args.rounds, **where})
    print(f"cross / same: p50 {ratios['p50_ms']:.2f}x, p99 {ratios['p99_ms']:.2f}x, "
          f"hub CPU per update {ratios['cpu_us_per_update']:.2f}x")
    print(f"shared the machine's {where['cpus']} cores: 2 hubs, Redis, PostgreSQL and this client "
          f"({args.rooms} writers + {args.rooms} readers); load average {where['load_avg']}")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def fanout_config(redis_url: str | None, dsn: str) -> str:
    """A hub for the fan-out runs: the documents benchmark's limits, the PostgreSQL store, and
    ``[cluster]`` unless ``redis_url`` is None (a hub alone)."""
    text = ("[server]\nhost = \"127.0.0.1\"\n[server.limits]\nmax_connections = 20000\n"
            "max_clients_per_room = 500\nreceive_rate = 0\n"
            f'[documents]\nstore = "postgres"\ngrace_period = 30\n[documents.postgres]\ndsn = "{dsn}"\n')
    if redis_url is not None:
        text += f'[cluster]\nredis = "{redis_url}"\nprefix = "bench"\n'
    return text


def fanout(args: argparse.Namespace) -> None:
    """``--hubs N``: the documents benchmark's throughput scenario on 1 hub and on N (see the module)."""
    import contextlib

    import psycopg
    from documents_bench import run_load_split

    from services import running, start_postgres, start_redis

    setups = {"1 hub": 1, f"{args.hubs} hubs": args.hubs}
    runs: dict[str, list[dict]] = {label: [] for label in setups}
    with (
        running("roomhub-bench-redis-", start_redis) as redis_server,
        running("roomhub-bench-postgres-", start_postgres) as pg,
    ):
        for round_no in range(args.rounds):
            for label, count in setups.items():
                database = f"fanout_{round_no}_{count}"
                with psycopg.connect(pg.dsn(), autocommit=True) as admin:
                    admin.execute(f'CREATE DATABASE "{database}"')
                with contextlib.ExitStack() as stack:
                    redis_url = redis_server.url if count > 1 else None
                    hubs = [stack.enter_context(HubProcess(fanout_config(redis_url, pg.dsn(database))))
                            for _ in range(count)]
                    result = run_load_split(
                        [h.port for h in hubs], "throughput", [h.ps for h in hubs],  # type: ignore[misc]
                        args.generators, rooms=args.rooms, clients=args.clients, window=args.window,
                        warmup=1.0, duration=args.seconds, spread=args.spread,
                    )
                split, whose = "", "the load generator's"
                if args.generators > 1:  # each generator's share, how far apart they started measuring
                    split = " (" + " + ".join(f"{g['delivered_per_s']:.0f}" for g in result["per_generator"])
                    split += f", started measuring {result['measuring_spread_ms']:.0f} ms apart)"
                    whose = f"the {args.generators} load generators'"
                print(f"round {round_no} {label}: {result['delivered_per_s']:.0f} updates/s "
                      f"delivered{split}, hubs' CPU {result['server_cpu_share']:.2f} cores, "
                      f"{whose} {result['generator_cpu_share']:.2f}", file=sys.stderr, flush=True)
                runs[label].append(result)
    figures = {}
    for label, results in runs.items():
        delivered = sum(r.get("delivered", 0) for r in results)
        seconds = sum(r["measured_s"] for r in results)
        cpu = sum(r.get("cpu_us_per_delivered", 0) * r.get("delivered", 0) for r in results)
        # each round's rate (summed over the generators), weighted by its measured seconds
        rate = sum(r["delivered_per_s"] * r["measured_s"] for r in results) / max(seconds, 1e-9)
        figures[label] = {
            "hubs": setups[label], "delivered_per_s": rate,
            "p50_ms": max(r.get("p50_ms") or 0 for r in results),
            "p99_ms": max(r.get("p99_ms") or 0 for r in results),
            "cpu_us_per_delivered": cpu / max(delivered, 1),
            "per_round_per_s": [round(r.get("delivered_per_s", 0)) for r in results],
            "hub_cores": max(r["server_cpu_share"] for r in results),
            "generator_cores": max(r["generator_cpu_share"] for r in results),
        }
    one, many = figures["1 hub"], figures[f"{args.hubs} hubs"]
    ratios = {"delivered_per_s": many["delivered_per_s"] / max(one["delivered_per_s"], 1e-9),
              "cpu_us_per_delivered": many["cpu_us_per_delivered"] / max(one["cpu_us_per_delivered"], 1e-9)}
    where = machine()
    rows = [[label, f["hubs"], f"{f['delivered_per_s']:.0f}", " ".join(map(str, f["per_round_per_s"])),
             f"{f['p50_ms']:.1f}", f"{f['p99_ms']:.1f}", f"{f['cpu_us_per_delivered']:.1f}",
             f"{f['hub_cores']:.2f}", f"{f['generator_cores']:.2f}"]
            for label, f in figures.items()]
    report("documents_cluster_fanout",
           ["set-up", "hubs", "delivered/s", "per round", "p50 ms (worst round)", "p99 ms (worst round)",
            "hub CPU us/delivered", "hubs' cores", "generators' cores"],
           rows, {"figures": figures, "ratios": ratios, "rooms": args.rooms, "clients": args.clients,
                  "window": args.window, "spread": args.spread, "generators": args.generators,
                  "seconds": args.seconds, "rounds": args.rounds, **where})
    print(f"{args.hubs} hubs / 1 hub: delivered updates/s {ratios['delivered_per_s']:.2f}x (bar: at least "
          f"1.6x for 2 hubs), hub CPU per delivered update {ratios['cpu_us_per_delivered']:.2f}x "
          "(bar: at most 1.5x)")
    generators = "one Node load generator" if args.generators == 1 else \
        f"{args.generators} Node load generators"
    print(f"shared the machine's {where['cpus']} cores: {args.hubs} hubs (or 1), Redis, PostgreSQL and "
          f"{generators} ({args.rooms * args.clients} clients: {args.rooms} rooms x {args.clients}); "
          f"load average {where['load_avg']}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rooms", type=int, default=20,
                        help="documents, one writer and one reader each (20)")
    parser.add_argument("--rate", type=float, default=25.0, help="updates/s per writer (default 25)")
    parser.add_argument("--seconds", type=float, default=5.0, help="per set-up and round (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    parser.add_argument("--cold", action="store_true",
                        help="writers send at once, before their hub has the room open (the first "
                        "updates then wait for the opening: the store's load, the stream's replay)")
    parser.add_argument("--hubs", type=int, default=None,
                        help="fan-out mode: the throughput scenario on 1 hub and on this many hubs")
    parser.add_argument("--clients", type=int, default=10, help="fan-out mode: clients per room (10)")
    parser.add_argument("--window", type=int, default=4, help="fan-out mode: edits in flight per client")
    parser.add_argument("--spread", choices=("clients", "rooms"), default="clients",
                        help="fan-out mode: clients over the hubs round-robin (a room on every hub, "
                        "default) or each room's clients on one hub (a balancer hashing the room)")
    parser.add_argument("--generators", type=int, default=1,
                        help="fan-out mode: Node load generator processes sharing the rooms, running "
                        "at once (default 1; one saturates at about one core)")
    arguments = parser.parse_args()
    if not 1 <= arguments.generators <= arguments.rooms:
        parser.error("--generators: from 1 to --rooms")
    if arguments.hubs is not None:
        fanout(arguments)
    else:
        asyncio.run(main(arguments))
