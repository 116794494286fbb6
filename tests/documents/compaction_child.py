"""Child process of the compaction crash test: check, append, flush, compact, forever.

``python compaction_child.py DB`` loads document "doc" from the store DB (a
PostgreSQL URI, or else an SQLite file), checks its array holds exactly 0..n-1 (exit 3 otherwise), then loops:
append 20 items as 20 updates, flush (prints ``acked N``), compact (prints
``compacting`` before and ``compacted`` after). The parent kills it with
SIGKILL at random moments.
"""

import asyncio
import sys
from pathlib import Path

from pycrdt import Array, Doc

from roomhub.documents.stores import PostgresStore, SQLiteStore, merge


async def main(db: str) -> None:
    if db.startswith("postgresql://"):
        store = PostgresStore(db, commit_window=0.002, compact_after=10**9)
    else:
        store = SQLiteStore(Path(db), commit_window=0.002, compact_after=10**9, synchronous="normal")
    await store.open()
    doc = Doc()
    updates = await store.load("doc")
    if updates:
        doc.apply_update(merge(updates))
    arr = doc.get("arr", type=Array)
    items = [int(v) for v in arr.to_py()]
    if items != list(range(len(items))):
        print(f"BAD {items}", flush=True)
        sys.exit(3)
    print(f"loaded {len(items)}", flush=True)
    doc.observe(lambda event: store.append("doc", event.update))
    n = len(items)
    while True:
        for _ in range(20):
            arr.append(n)
            n += 1
        await store.flush()
        print(f"acked {n}", flush=True)
        print("compacting", flush=True)
        await store.compact("doc")
        print("compacted", flush=True)


asyncio.run(main(sys.argv[1]))
