"""A document room served by two hubs (replication over Redis Streams) against one hub, same run.

Two hubs of one cluster (a private Redis and PostgreSQL, as the tests start
them) serve ``--rooms`` documents. In each room a writer sends one small text
edit (a y-websocket update frame) every ``1 / --rate`` seconds and a reader
measures when it arrives:

- ``same``: writer and reader on hub A (the update goes through one hub);
- ``cross``: writer on hub A, reader on hub B (hub A publishes it to the
  document's stream, hub B reads and sends it).

The two set-ups alternate for ``--rounds`` rounds of ``--seconds`` each (other
rooms each round, so that every round starts fresh). Prints the delivery
latency (p50, p99, ms) per set-up, the ratio cross / same, the hubs' CPU
seconds per delivered update, and what shared the machine's cores (both hubs,
Redis, PostgreSQL, this client: the load average).
"""

from __future__ import annotations

import argparse
import asyncio
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


async def writer(url: str, rate: float, seconds: float, sent: dict[int, float], base: int) -> None:
    doc = Doc()
    text = doc.get("text", type=Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    async with connect(url, max_size=None) as ws:
        await ws.send(p.sync_step1(p.EMPTY_STATE_VECTOR))
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
    stop = asyncio.Event()
    readers, ready = [], []
    reader_hub = a if setup == "same" else b
    for r in range(rooms):
        event = asyncio.Event()
        ready.append(event)
        room = f"r{round_no}-{setup}-{r}"
        readers.append(asyncio.create_task(reader(f"{reader_hub.ws}/yjs/{room}", arrived, event, stop)))
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready)), 30)
    cpu = a.cpu_seconds() + b.cpu_seconds()
    await asyncio.gather(*(
        writer(f"{a.ws}/yjs/r{round_no}-{setup}-{r}", args.rate, args.seconds, sent, r * 10**6)
        for r in range(rooms)
    ))
    cpu = a.cpu_seconds() + b.cpu_seconds() - cpu
    stop.set()
    await asyncio.gather(*readers)
    latencies = [(arrived[s] - t) * 1000 for s, t in sent.items() if s in arrived]
    return {"sent": len(sent), "delivered": len(latencies), "latencies": latencies, "cpu": cpu}


async def main(args: argparse.Namespace) -> None:
    from services import running, start_postgres, start_redis

    with (
        running("roomhub-bench-redis-", start_redis) as redis_server,
        running("roomhub-bench-postgres-", start_postgres) as pg,
        HubProcess(config(redis_server.url, pg.dsn())) as a,
        HubProcess(config(redis_server.url, pg.dsn())) as b,
    ):
        totals: dict[str, dict[str, list[float] | float]] = {
            s: {"latencies": [], "sent": 0, "delivered": 0, "cpu": 0.0} for s in ("same", "cross")
        }
        for round_no in range(args.rounds):
            for setup in ("same", "cross"):
                result = await one_round(a, b, setup, args.rooms, round_no, args)
                total = totals[setup]
                total["latencies"] += result["latencies"]  # type: ignore[operator]
                for key in ("sent", "delivered", "cpu"):
                    total[key] += result[key]  # type: ignore[operator]
    figures = {}
    for setup, total in totals.items():
        lat = sorted(total["latencies"])  # type: ignore[arg-type]
        figures[setup] = {
            "sent": total["sent"], "delivered": total["delivered"],
            "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99),
            "cpu_us_per_update": 1e6 * total["cpu"] / max(1, total["delivered"]),  # type: ignore[operator]
        }
    rows = [[s, f["sent"], f["delivered"], f"{f['p50_ms']:.2f}", f"{f['p99_ms']:.2f}",
             f"{f['cpu_us_per_update']:.0f}"] for s, f in figures.items()]
    ratios = {k: figures["cross"][k] / figures["same"][k] for k in ("p50_ms", "p99_ms", "cpu_us_per_update")}
    where = machine()
    report("documents_cluster", ["setup", "sent", "delivered", "p50 ms", "p99 ms", "hub CPU us/update"],
           rows, {"figures": figures, "ratios": ratios, "rooms": args.rooms, "rate": args.rate,
                  "seconds": args.seconds, "rounds": args.rounds, **where})
    print(f"cross / same: p50 {ratios['p50_ms']:.2f}x, p99 {ratios['p99_ms']:.2f}x, "
          f"hub CPU per update {ratios['cpu_us_per_update']:.2f}x")
    print(f"shared the machine's {where['cpus']} cores: 2 hubs, Redis, PostgreSQL and this client "
          f"({args.rooms} writers + {args.rooms} readers); load average {where['load_avg']}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rooms", type=int, default=20,
                        help="documents, one writer and one reader each (20)")
    parser.add_argument("--rate", type=float, default=25.0, help="updates/s per writer (default 25)")
    parser.add_argument("--seconds", type=float, default=5.0, help="per set-up and round (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    asyncio.run(main(parser.parse_args()))
