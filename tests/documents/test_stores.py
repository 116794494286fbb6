"""The stores directly: the contract, group commit, compaction that survives SIGKILL."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import sys
from pathlib import Path

import pytest
from pycrdt import Array, Doc, Text

from roomhub.documents.stores import MemoryStore, SQLiteStore, merge

ROOT = Path(__file__).resolve().parents[2]


def edits(n: int) -> tuple[list[bytes], str]:
    doc = Doc()
    updates: list[bytes] = []
    doc.observe(lambda e: updates.append(e.update))
    text = doc.get("text", type=Text)
    for i in range(n):
        text.insert(len(text), f"{i},")
    return updates, str(text)


def text_of(updates: list[bytes]) -> str:
    doc = Doc()
    if updates:
        doc.apply_update(merge(updates))
    return str(doc.get("text", type=Text))


@pytest.fixture(params=["memory", "sqlite"])
async def store(request, tmp_path):
    s = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "d.sqlite3")
    await s.open()
    yield s
    await s.close()


async def test_store_contract(store):
    updates, expected = edits(30)
    for u in updates:
        store.append("a", u)
    store.append("b", updates[0])
    assert text_of(await store.load("a")) == expected  # pending updates are part of a load
    await store.flush()
    docs = {d.name: d for d in await store.documents()}
    assert docs["a"].updates == 30 and docs["b"].updates == 1
    compacted = await store.compact("a")
    assert compacted is not None and compacted.updates == 1
    assert len(await store.load("a")) == 1
    assert text_of(await store.load("a")) == expected
    assert await store.compact("nope") is None
    assert await store.delete("a") is True
    assert await store.load("a") == []
    assert await store.delete("a") is False
    assert [d.name for d in await store.documents()] == ["b"]


async def test_sqlite_writes_a_run_of_mergeable_updates_as_one_row(tmp_path):
    store = SQLiteStore(tmp_path / "d.sqlite3", commit_window=0.05, compact_after=10**6)
    await store.open()
    updates, expected = edits(30)
    other, other_text = edits(3)
    for u in updates[:10]:
        store.append_mergeable("doc", u)
    store.append_mergeable("other", other[0])  # another document's run is its own
    store.append("doc", updates[10])  # alone: ends the run
    for u in updates[11:20]:
        store.append_mergeable("doc", u)
    await store.flush()
    for u in updates[20:]:  # a later commit starts a new run
        store.append_mergeable("doc", u)
    for u in other[1:]:
        store.append("other", u)
    await store.flush()
    rows = await store.load("doc")
    assert rows[0] == merge(updates[:10]) and rows[1] == updates[10]
    assert rows[2] == merge(updates[11:20]) and rows[3] == merge(updates[20:])
    assert len(rows) == 4 and text_of(rows) == expected
    assert await store.load("other") == other and text_of(other) == other_text
    listed = {d.name: d for d in await store.documents()}
    assert listed["doc"].updates == 4 and listed["doc"].bytes == sum(map(len, rows))
    await store.close()


async def test_the_base_store_writes_mergeable_updates_as_appended(tmp_path):
    store = MemoryStore()
    updates, _ = edits(3)
    for u in updates:
        store.append_mergeable("doc", u)
    assert await store.load("doc") == updates


async def test_sqlite_group_commit_batches_writes(tmp_path, monkeypatch):
    from roomhub.documents.stores import sqlite as mod

    batches: list[int] = []
    original = mod.SQLiteFile.write

    def counting(self, batch):
        batches.append(len(batch))
        return original(self, batch)

    monkeypatch.setattr(mod.SQLiteFile, "write", counting)
    store = SQLiteStore(tmp_path / "d.sqlite3", commit_window=0.05, compact_after=10**6)
    await store.open()
    updates, expected = edits(1000)
    for u in updates:
        store.append("doc", u)
    await asyncio.sleep(0.2)  # the window elapses: one commit for the lot, without a flush call
    assert sum(batches) == 1000 and len(batches) == 1
    await store.close()
    # a fresh store reads the same file back
    again = SQLiteStore(tmp_path / "d.sqlite3")
    await again.open()
    assert text_of(await again.load("doc")) == expected
    await again.close()


async def test_sqlite_loads_on_the_loop_and_in_the_worker_agree(tmp_path, monkeypatch):
    """Small known documents are read on the loop's thread, others in the worker: same content,
    appends and compactions in between included."""
    from roomhub.documents.stores import sqlite as mod

    in_worker: list[str] = []
    original = mod.SQLiteFile.load

    def counting(self, name):
        in_worker.append(name)
        return original(self, name)

    monkeypatch.setattr(mod.SQLiteFile, "load", counting)
    store = SQLiteStore(tmp_path / "d.sqlite3", commit_window=0.01, compact_after=10**6)
    await store.open()
    updates, expected = edits(200)
    for u in updates[:100]:
        store.append("small", u)
    store.append("big", os.urandom(mod.INLINE_LOAD_BYTES + 1))
    await store.flush()
    first = await store.load("small")  # size unknown since start: the worker reads it
    assert in_worker == ["small"] and len(first) == 100
    for u in updates[100:]:
        store.append("small", u)
    await store.flush()
    assert text_of(await store.load("small")) == expected and in_worker == ["small"]  # on the loop
    await store.compact("small")
    assert len(await store.load("small")) == 1 and in_worker == ["small"]
    assert text_of(await store.load("small")) == expected
    await store.load("big")
    await store.load("big")  # known, but too big for the loop: the worker again
    assert in_worker == ["small", "big", "big"]
    await store.close()


async def test_sqlite_compacts_after_threshold_and_close_flushes(tmp_path):
    path = tmp_path / "d.sqlite3"
    store = SQLiteStore(path, commit_window=0.01, compact_after=50)
    await store.open()
    updates, expected = edits(120)
    for u in updates:
        store.append("doc", u)
        await asyncio.sleep(0)  # spread over several commits
    await store.close()  # flushes, waits for compactions
    with sqlite3.connect(path) as db:
        (rows,) = db.execute("SELECT count(*) FROM updates WHERE doc = 'doc'").fetchone()
        (journal,) = db.execute("PRAGMA journal_mode").fetchone()
    assert rows < 120 and journal == "wal"
    again = SQLiteStore(path)
    await again.open()
    assert text_of(await again.load("doc")) == expected
    await again.close()


async def test_compaction_killed_at_random_moments_never_loses_nor_duplicates(tmp_path):
    db = tmp_path / "crash.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    rng = random.Random(4)
    acked = 0
    kills_mid_compaction = 0
    for _ in range(8):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(Path(__file__).with_name("compaction_child.py")),
            str(db),
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert line.startswith("loaded "), line  # the child checked 0..n-1 exactly
        assert int(line.split()[1]) >= acked, "acknowledged items were lost"
        await asyncio.sleep(rng.uniform(0.2, 0.8))
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        printed = (await proc.stdout.read()).decode().split()
        lines = (await proc.stdout.read()).decode()  # nothing left: EOF
        assert lines == ""
        # every "acked N" the child printed is an acknowledged write
        acked = max([acked] + [int(printed[i + 1]) for i, w in enumerate(printed) if w == "acked"])
        kills_mid_compaction += bool(printed) and printed[-1] == "compacting"
    doc = Doc()
    store = SQLiteStore(db)
    await store.open()
    doc.apply_update(merge(await store.load("doc")))
    await store.close()
    items = [int(v) for v in doc.get("arr", type=Array).to_py()]
    assert items == list(range(len(items))) and len(items) >= acked
    assert kills_mid_compaction >= 1, "no kill landed during a compaction: make compaction longer"


def test_squash_keeps_the_updates_from_the_first_that_waits_as_they_are():
    from roomhub.documents.stores import squash

    updates, expected = edits(5)  # "0,1,2,3,4,": each update depends on the one before
    other, _ = edits(1)
    log = [updates[0], updates[1], updates[3], *other, updates[4]]  # updates[2] never arrived
    rows = squash(log)
    assert rows[1:] == [updates[3], *other, updates[4]]  # a snapshot, then the rest as it came
    assert rows[0] != updates[0] and text_of(rows[:1]) == "0,1,"
    doc = Doc()
    for row in [*rows, updates[2]]:  # the missing update arrives later: nothing was lost
        doc.apply_update(row)
    assert str(doc.get("text", type=Text)).count(expected) == 1
    assert len(str(doc.get("text", type=Text))) == len(expected) + len("0,")
    assert squash([updates[0], updates[3], updates[4]]) == [updates[0], updates[3], updates[4]]
