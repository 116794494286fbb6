"""The document stores head to head: PostgreSQL against SQLite, same process, same run.

Both stores get the same updates (small Yjs text edits, ``--docs`` documents)
in two modes:

- ``durable``: ``--writers`` concurrent writers, each appending one update and
  waiting for ``flush()`` (the update durable) before the next, for
  ``--seconds``: updates/s committed and commit latency (append to durable,
  p50/p99). Writers that wait at once share a transaction (group commit).
- ``stream``: updates appended as fast as one coroutine makes them for
  ``--seconds``, committed by the store's window (``commit_window``), then one
  final flush: updates/s committed.

Compaction runs as it does in a hub (``compact_after`` 500 rows). SQLite runs
with ``synchronous = "full"`` in a temporary folder; PostgreSQL is a private
cluster (Debian's server, as the tests start it, with fsync on) unless
``--dsn`` names another. Prints a table, the ratios PostgreSQL / SQLite and
one JSON line; the machine's CPUs and load average say what shared the cores
(this process, and PostgreSQL's server processes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from _common import machine, percentile, postgres, report
from pycrdt import Doc, Text

from roomhub.documents.stores import DocumentStore, PostgresStore, SQLiteStore


def edits(docs: int) -> Iterator[tuple[str, bytes]]:
    """Endless ``(document, update)`` pairs: one character typed at a time, round robin."""
    texts = []
    for _ in range(docs):
        doc = Doc()
        texts.append((doc, doc.get("text", type=Text)))
    n = 0
    while True:
        index = n % docs
        doc, text = texts[index]
        captured: list[bytes] = []
        sub = doc.observe(lambda e, out=captured: out.append(e.update))
        text.insert(len(text), "x")
        doc.unobserve(sub)
        yield f"doc{index}", captured[0]
        n += 1


async def durable(store: DocumentStore, writers: int, seconds: float, docs: int) -> dict[str, float]:
    source = edits(docs)
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def writer() -> None:
        while time.perf_counter() < deadline:
            name, update = next(source)
            started = time.perf_counter()
            store.append(name, update)
            await store.flush()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    elapsed = time.perf_counter() - started
    ms = [x * 1000 for x in latencies]
    return {"updates": len(latencies), "seconds": elapsed, "rate": len(latencies) / elapsed,
            "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99)}


async def stream(store: DocumentStore, seconds: float, docs: int) -> dict[str, float]:
    source = edits(docs)
    count = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for _ in range(100):
            name, update = next(source)
            store.append(name, update)
        count += 100
        await asyncio.sleep(0)  # let the store's writer run, as a hub's loop would
    await store.flush()
    elapsed = time.perf_counter() - started
    return {"updates": count, "seconds": elapsed, "rate": count / elapsed,
            "p50_ms": float("nan"), "p99_ms": float("nan")}


@contextlib.asynccontextmanager
async def opened(store: DocumentStore) -> AsyncIterator[DocumentStore]:
    """``store`` opened, emptied (a run starts from nothing, as SQLite from a new file), closed."""
    await store.open()
    try:
        for doc in await store.documents():
            await store.delete(doc.name)
        yield store
    finally:
        await store.close()


async def main(args: argparse.Namespace) -> None:
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp, postgres(args.dsn) as dsn:
        makers = {
            "sqlite": lambda run: SQLiteStore(Path(tmp) / f"{run}.sqlite3"),
            "postgres": lambda run: PostgresStore(dsn),
        }
        for round_ in range(args.rounds):  # interleaved, so that a change of load hits both
            for name, make in makers.items():
                for mode in ("durable", "stream"):
                    async with opened(make(f"{round_}-{mode}")) as store:
                        if mode == "durable":
                            figures = await durable(store, args.writers, args.seconds, args.docs)
                        else:
                            figures = await stream(store, args.seconds, args.docs)
                    best = results.setdefault(name, {}).get(mode)
                    if best is None or figures["rate"] > best["rate"]:
                        results[name][mode] = figures
    rows = [
        [name, mode, f"{f['updates']}", f"{f['rate']:.0f}", f"{f['p50_ms']:.2f}", f"{f['p99_ms']:.2f}"]
        for name, modes in results.items()
        for mode, f in modes.items()
    ]
    ratios = {
        mode: {
            "rate": results["postgres"][mode]["rate"] / results["sqlite"][mode]["rate"],
            "p99": results["postgres"][mode]["p99_ms"] / results["sqlite"][mode]["p99_ms"],
        }
        for mode in ("durable", "stream")
    }
    where = machine()
    report(
        "documents_store",
        ["store", "mode", "updates", "updates/s", "p50 ms", "p99 ms"],
        rows,
        {"results": results, "ratios": ratios, "writers": args.writers, "docs": args.docs,
         "seconds": args.seconds, "rounds": args.rounds, **where},
    )
    print(f"postgres / sqlite: durable {ratios['durable']['rate']:.2f}x updates/s, "
          f"{ratios['durable']['p99']:.2f}x p99 latency; stream {ratios['stream']['rate']:.2f}x updates/s")
    print(f"shared the machine's {where['cpus']} cores: this process and PostgreSQL's server "
          f"(load average {where['load_avg']}); best of {args.rounds} interleaved rounds")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="per store and mode (default 5)")
    parser.add_argument("--writers", type=int, default=32, help="concurrent durable writers (default 32)")
    parser.add_argument("--docs", type=int, default=20, help="documents the updates go to (default 20)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds, best kept (default 2)")
    parser.add_argument("--dsn", help="an existing PostgreSQL database (default: a private cluster)")
    asyncio.run(main(parser.parse_args()))
