"""A document's compaction in a store: from the live room's state vs a replay of the log.

A document written one update per row (``--rows`` rows: a client appending ``k0.<i>;`` to a
text, as the documents benchmark's writer does) is compacted to one row twice, in fresh
stores: once with no room attached (the store reads every row and replays it into a fresh
Doc, :func:`~roomhub.documents.stores.squash`), once with the writing document attached as
a live room's would be (:meth:`~roomhub.documents.stores.DocumentStore.attach`, before its
writes: the rows are replaced by its encoding, nothing read or decoded). Printed per
compaction: the CPU time of this process (the SQLite store's worker thread included; not
PostgreSQL's server processes) and the wall time, in milliseconds, and their ratios.

``--store sqlite`` (the default) or ``postgres``: a private PostgreSQL cluster (Debian's
server, started as the tests start theirs, fsync on) unless ``--dsn`` names a database
(whose ``roomhub_updates`` table then gets a document named ``bench-compaction-<n>``,
deleted after).

    python bench/documents_compaction.py                 # 10,000 and 100,000 rows (~20 s)
    python bench/documents_compaction.py --rows 1000
    python bench/documents_compaction.py --store postgres --rows 10000

The machine may be shared: run it more than once and quote the spread.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import postgres
from pycrdt import Doc, Text

from roomhub.documents.stores import PostgresStore, SQLiteStore
from roomhub.documents.stores.group_commit import GroupCommitStore


async def compaction_ms(make: Callable[[], GroupCommitStore], name: str, rows: int,
                        live: bool) -> tuple[float, float]:
    """CPU and wall milliseconds of one compaction of a ``rows``-row document, from its live
    state or not."""
    store = make()
    await store.open()
    try:
        doc = Doc()
        text = doc.get("text", type=Text)
        if live:
            store.attach(name, doc.get_update)
        doc.observe(lambda event: store.append(name, event.update))
        for i in range(rows):
            text.insert(len(text), f"k0.{i};")
        await store.flush()
        cpu, wall = time.process_time(), time.perf_counter()
        result = await store.compact(name)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        assert result is not None and result.updates == 1, result
        return cpu * 1e3, wall * 1e3
    finally:
        await store.delete(name)
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--dsn", help="with --store postgres: a database (default: a private cluster)")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as workdir, contextlib.ExitStack() as stack:
        if args.store == "postgres":
            dsn = stack.enter_context(postgres(args.dsn))

            def make() -> GroupCommitStore:
                return PostgresStore(dsn, compact_after=10**9)
        else:
            files = itertools.count()

            def make() -> GroupCommitStore:  # a fresh file each time
                return SQLiteStore(Path(workdir) / f"documents-{next(files)}.sqlite3",
                                   compact_after=10**9, synchronous="normal")

        print(f"store: {args.store}; load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"{'rows':>8} {'replay ms CPU':>14} {'wall':>8} {'live ms CPU':>12} {'wall':>8}"
              f" {'live/replay CPU':>16} {'wall':>6}")
        for n, rows in enumerate(args.rows):
            replay = await compaction_ms(make, f"bench-compaction-{n}", rows, live=False)
            live = await compaction_ms(make, f"bench-compaction-{n}", rows, live=True)
            ratios = (live[0] / replay[0], live[1] / replay[1])
            results[rows] = {"store": args.store, "replay_cpu_ms": replay[0], "replay_wall_ms": replay[1],
                             "live_cpu_ms": live[0], "live_wall_ms": live[1],
                             "ratio_cpu": ratios[0], "ratio_wall": ratios[1]}
            print(f"{rows:>8} {replay[0]:>14.1f} {replay[1]:>8.1f} {live[0]:>12.1f} {live[1]:>8.1f}"
                  f" {ratios[0]:>16.3f} {ratios[1]:>6.3f}")
    print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main())
