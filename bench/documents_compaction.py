"""A document's compaction in the SQLite store: from the live room's state vs a replay of the log.

A document written one update per row (``--rows`` rows: a client appending ``k0.<i>;`` to a
text, as the documents benchmark's writer does) is compacted to one row twice, in fresh
stores: once with no room attached (the store reads every row and replays it into a fresh
Doc, :func:`~roomhub.documents.stores.squash`), once with the writing document attached as
a live room's would be (:meth:`~roomhub.documents.stores.DocumentStore.attach`: the rows are
replaced by its encoding, nothing read or decoded). Printed: the CPU time of this process
(the worker thread's included) per compaction, in milliseconds, and their ratio.

    python bench/documents_compaction.py                 # 10,000 and 100,000 rows (~20 s)
    python bench/documents_compaction.py --rows 1000

The machine may be shared: run it more than once and quote the spread.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from pycrdt import Doc, Text

from roomhub.documents.stores import SQLiteStore


async def compaction_cpu_ms(rows: int, live: bool) -> float:
    """CPU milliseconds of one compaction of a ``rows``-row document, from its live state or not."""
    with tempfile.TemporaryDirectory() as workdir:
        store = SQLiteStore(Path(workdir) / "documents.sqlite3", compact_after=10**9,
                            synchronous="normal")
        await store.open()
        try:
            doc = Doc()
            text = doc.get("text", type=Text)
            doc.observe(lambda event: store.append("doc", event.update))
            for i in range(rows):
                text.insert(len(text), f"k0.{i};")
            await store.flush()
            if live:
                store.attach("doc", doc.get_update)
            started = time.process_time()
            result = await store.compact("doc")
            cpu = time.process_time() - started
            assert result is not None and result.updates == 1, result
            return cpu * 1e3
        finally:
            await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    results = {}
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'rows':>8} {'replay (ms CPU)':>16} {'live state (ms CPU)':>20} {'live/replay':>12}")
    for rows in args.rows:
        replay = await compaction_cpu_ms(rows, live=False)
        live = await compaction_cpu_ms(rows, live=True)
        results[rows] = {"replay_cpu_ms": replay, "live_cpu_ms": live, "ratio": live / replay}
        print(f"{rows:>8} {replay:>16.1f} {live:>20.1f} {live / replay:>12.3f}")
    print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main())
