"""The stores directly: the contract (every store), group commit, compaction that survives SIGKILL;
PostgreSQL: one transaction per batch, several stores (hubs) on one database compacting while they
write."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import sys
from pathlib import Path

import pytest
from pycrdt import Array, Doc, Map, Text

from hubtest import eventually
from roomhub.documents.stores import MemoryStore, PostgresStore, SQLiteStore, load_into, merge

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


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request, tmp_path):
    if request.param == "postgres":
        s = PostgresStore(request.getfixturevalue("postgres_dsn"))
    else:
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


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_compaction_killed_at_random_moments_never_loses_nor_duplicates(tmp_path, request, kind):
    db = request.getfixturevalue("postgres_dsn") if kind == "postgres" else str(tmp_path / "crash.sqlite3")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    rng = random.Random(4)
    acked = 0
    kills_mid_compaction = 0
    for _ in range(8):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(Path(__file__).with_name("compaction_child.py")),
            db,
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
    store = PostgresStore(db) if kind == "postgres" else SQLiteStore(Path(db))
    await store.open()
    doc.apply_update(merge(await store.load("doc")))
    await store.close()
    items = [int(v) for v in doc.get("arr", type=Array).to_py()]
    assert items == list(range(len(items))) and len(items) >= acked
    assert kills_mid_compaction >= 1, "no kill landed during a compaction: make compaction longer"


async def test_sqlite_knows_a_log_compacted_to_one_snapshot_integrates_whole(tmp_path):
    """One row a compaction wrote (nothing waited) loads whole: a room applies it without decoding
    it a second time to see what waits. Any other log is checked as before."""
    store = SQLiteStore(tmp_path / "d.sqlite3", commit_window=0.01, compact_after=10**6)
    await store.open()
    try:
        updates, expected = edits(20)
        store.append("one", updates[3])  # one row never compacted: it waits for updates[0:3]
        for u in updates:
            store.append("doc", u)
        for u in [updates[0], updates[1], updates[3]]:  # updates[2] never arrives
            store.append("gap", u)
        await store.flush()
        assert (await store.load_whole("one")) == ([updates[3]], False)
        assert (await store.load_whole("doc"))[1] is False
        await store.compact("doc")
        rows, whole = await store.load_whole("doc")
        assert whole and len(rows) == 1 and text_of(rows) == expected
        assert await store.load("doc") == rows
        await store.compact("gap")  # a snapshot of the first two, then the update that waits
        rows, whole = await store.load_whole("gap")
        assert len(rows) == 2 and not whole
        other, _ = edits(1)
        store.append("doc", other[0])
        assert (await store.load_whole("doc"))[1] is False  # a row after the snapshot
    finally:
        await store.close()


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


async def test_postgres_group_commit_writes_a_window_in_one_transaction(postgres_dsn):
    import psycopg

    store = PostgresStore(postgres_dsn, commit_window=0.05, compact_after=10**6)
    await store.open()
    updates, expected = edits(1000)
    for u in updates:
        store.append("doc", u)

    def rows() -> int:
        with psycopg.connect(postgres_dsn) as db:
            return db.execute("SELECT count(*) FROM roomhub_updates").fetchone()[0]

    await eventually(lambda: rows() == 1000, what="the window's commit, without a flush call")
    with psycopg.connect(postgres_dsn) as db:
        # rows written by one transaction share its id (xmin): the 1000 updates were one commit
        assert db.execute("SELECT count(DISTINCT xmin::text) FROM roomhub_updates").fetchone() == (1,)
    await store.close()
    again = PostgresStore(postgres_dsn)  # another hub, or this one restarted, reads the same rows
    await again.open()
    assert text_of(await again.load("doc")) == expected
    await again.close()


@pytest.mark.parametrize("live", [False, True], ids=["replay", "live"])
async def test_postgres_stores_compacting_one_document_while_writing_lose_nothing(postgres_dsn, live):
    """Three stores on one database (three hubs): two append updates of their own clients to one
    document in small, frequent batches while all three compact it again and again; every item is
    there once at the end. ``live``: each writer's document is attached as an open room's (its
    compactions write its state, which lacks the other writer's items), the third replays."""
    writers = [HeldPostgresStore(postgres_dsn, commit_window=0.001, compact_after=15) for _ in range(2)]
    for s in writers:
        s.release.set()
    compactor = PostgresStore(postgres_dsn, compact_after=10**6)
    for s in (*writers, compactor):
        await s.open()
    per_writer = 300
    writing = True
    compactions = 0

    async def write(store: PostgresStore, tag: str) -> None:
        doc = Doc()
        doc.observe(lambda e: store.append("shared", e.update))
        if live:
            store.attach("shared", doc.get_update)
        arr = doc.get("arr", type=Array)
        for i in range(per_writer):
            arr.append(f"{tag}{i}")
            await asyncio.sleep(0.0005 if i % 7 else 0.003)
        await store.flush()

    async def compact_continuously(store: PostgresStore) -> None:
        nonlocal compactions
        while writing:
            result = await store.compact("shared")
            compactions += result is not None and result.updates < 15
            # Live: rows a writer committed must outlive the replays a while, or none is left
            # for its state to replace.
            await asyncio.sleep(0.01 if live else 0)

    compacting = [asyncio.create_task(compact_continuously(s)) for s in (*writers, compactor)]
    await asyncio.gather(write(writers[0], "a"), write(writers[1], "b"))
    writing = False
    await asyncio.gather(*compacting)
    for s in writers:
        await s.close()
    doc = Doc()
    load_into(doc, await compactor.load("shared"))
    items = doc.get("arr", type=Array).to_py()
    expected = [f"a{i}" for i in range(per_writer)] + [f"b{i}" for i in range(per_writer)]
    assert sorted(items) == sorted(expected)
    assert compactions > 0, "no compaction happened while the writers wrote"
    if live:
        assert sum(s.written for s in writers) > 0, "no compaction from a writer's state"
    else:
        assert not any(s.snapshots for s in writers)
    rows = {d.name: d.updates for d in await compactor.documents()}["shared"]
    assert rows < 2 * per_writer
    await compactor.close()


async def test_flush_waits_for_what_was_appended_before_not_for_other_writers(store):
    """A room's flush (its eviction, a load) returns once its own updates are durable, while other
    rooms keep appending: it must not wait for a queue that never empties."""
    updates, expected = edits(2)
    busy, _ = edits(20000)
    writing = True

    async def other_room() -> None:
        for u in busy:
            if not writing:
                return
            store.append("busy", u)
            await asyncio.sleep(0)

    other = asyncio.create_task(other_room())
    try:
        for _ in range(50):  # the other room's updates are queued and being written
            await asyncio.sleep(0)
        for u in updates:
            store.append("a", u)
        await asyncio.wait_for(store.flush(), 20)
        assert not other.done(), "the other room stopped writing before the flush returned"
    finally:
        writing = False
        await other
    assert text_of(await store.load("a")) == expected


class Recorded:
    """A database store (mixed into SQLiteStore or PostgresStore) that records its compactions:
    ``snapshots`` the rows each compaction from a room's state was told its state holds (it
    waits for ``release`` before its transaction: a test commits rows between the state's taking
    and its transaction) and ``written`` how many of them wrote it, ``replays`` the compactions
    that read and replayed the log."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.release = asyncio.Event()
        self.snapshots: list[object] = []
        self.written = 0
        self.replays = 0

    async def compact_snapshot(self, name, snapshot, held):
        self.snapshots.append(held)
        await self.release.wait()
        result = await super().compact_snapshot(name, snapshot, held)
        self.written += result is not None
        return result

    async def compact_rows(self, name):
        self.replays += 1
        return await super().compact_rows(name)


class HeldSQLiteStore(Recorded, SQLiteStore):
    pass


class HeldPostgresStore(Recorded, PostgresStore):
    pass


@pytest.fixture(params=["sqlite", "postgres"])
def held_store(request, tmp_path):
    """Makes a :class:`Recorded` store of either kind, keyword arguments passed on (the test
    opens and closes it)."""

    def make(**kwargs):
        if request.param == "postgres":
            return HeldPostgresStore(request.getfixturevalue("postgres_dsn"), **kwargs)
        return HeldSQLiteStore(tmp_path / "d.sqlite3", **kwargs)

    return make


async def open_room(store, stored: int = 0):
    """A document room ``doc`` of ``store`` (no cluster), created after ``stored`` updates were
    committed for it (:func:`edits`): it loaded them."""
    from roomhub.core.bus import LocalBus
    from roomhub.documents.room import DocumentContext, DocumentRoom

    updates, _ = edits(stored)
    for u in updates:
        store.append("doc", u)
    await store.flush()
    room = DocumentRoom("doc", DocumentContext(store), LocalBus())
    await room.on_create()
    return room


async def test_compaction_from_a_live_document_keeps_rows_committed_after_its_state(held_store):
    """A compaction takes the live document's state at one commit and writes it later: the rows
    committed in between (updates the state lacks) are kept after it, none lost, none doubled."""
    store = held_store(commit_window=0.001, compact_after=20)
    await store.open()
    try:
        live = Doc()
        text = live.get("text", type=Text)
        live.observe(lambda e: store.append("doc", e.update))
        store.attach("doc", live.get_update)
        for i in range(25):
            text.insert(len(text), f"{i},")
        await store.flush()
        await eventually(lambda: store.snapshots, what="a compaction from the document's state")
        store.detach("doc", live.get_update)  # the state the compaction took lacks what follows
        for i in range(25, 40):
            text.insert(len(text), f"{i},")
            await store.flush()  # committed, one row each, while the compaction waits
        store.release.set()
        await store.drain()
        rows, whole = await store.load_whole("doc")
        assert not whole and text_of(rows) == str(text)
        assert text_of(rows[:1]) == "".join(f"{i}," for i in range(25))  # the snapshot, first
        assert len(rows) == 16  # the snapshot and the 15 rows committed after it
        assert store.replays == 0
        assert (await store.compact("doc")).updates == 1  # no state: replay
        assert store.replays == 1 and len(store.snapshots) == 1
        assert text_of(await store.load("doc")) == str(text)
    finally:
        store.release.set()
        await store.close()


async def test_a_room_compacts_into_its_state_unless_a_deletion_waits(held_store):
    """A document room hands the store its state; a deletion of an item the document lacks
    (left out of a Doc's encoding) makes it replay the log instead, so the deletion is kept."""
    from roomhub.documents import protocol as p

    store = held_store(commit_window=0.001, compact_after=10**6)
    store.release.set()
    await store.open()
    try:
        author = Doc()
        text = author.get("text", type=Text)
        text += "hello"
        inserted = author.get_update()
        before = author.get_state()
        del text[1:3]
        deletion = author.get_update(before)

        room = await open_room(store)
        room.handle(None, p.sync_update(deletion))  # the item it deletes never reached the room
        room._flush()
        await store.flush()
        assert room.snapshot() is None
        await store.compact("doc")
        assert store.snapshots == [] and store.replays == 1  # replayed: the deletion is in the log
        room.handle(None, p.sync_update(inserted))
        room._flush()
        await store.flush()
        assert room.snapshot() is not None  # the deletion applied once the item came
        await store.compact("doc")
        assert len(store.snapshots) == 1
        await room.on_teardown()
        assert text_of(await store.load("doc")) == "hlo"
    finally:
        await store.close()


async def test_an_open_room_compacts_from_its_state_without_replaying_the_log(held_store):
    """A room loaded from stored rows, changed by its clients and by another hub (replicated to
    it, stored by that hub, so in no row of this store), is compacted into its state: one row,
    holding the other hub's change too, which a replay of the log could not have written; it
    loads back as the room's document."""
    store = held_store(commit_window=0.001, compact_after=10**6)
    store.release.set()
    await store.open()
    try:
        room = await open_room(store, stored=30)  # loads the 30 rows
        text = room.doc.get("text", type=Text)
        for i in range(10):
            text += f"r{i},"  # a change made here: stored by this store
        other = Doc()
        other.get("map", type=Map)["from"] = "another hub"
        room.apply_remote(other.get_update())  # applied, not stored here
        room._flush()
        await store.flush()
        assert len(await store.load("doc")) == 31
        result = await store.compact("doc")
        assert store.replays == 0 and len(store.snapshots) == 1
        assert result is not None and result.updates == 1
        rows = await store.load("doc")
        assert len(rows) == 1 and result.bytes == len(rows[0])
        loaded = Doc()
        load_into(loaded, rows)
        assert str(loaded.get("text", type=Text)) == str(text)
        assert loaded.get("map", type=Map).to_py() == {"from": "another hub"}  # the state's alone
        await room.on_teardown()
        assert text_of(await store.load("doc")) == str(text)
    finally:
        await store.close()


async def test_postgres_room_compaction_keeps_rows_another_hub_committed_after_its_load(postgres_dsn):
    """Hub A's room compacts from its state while hub B stores updates of its own clients that
    A's room never applied: one committed between A's commits, one whose transaction took a
    smaller id than A's last row and committed after it (ids come from one sequence and commit
    out of order). Both are kept: a cut at A's last id would have deleted them. The one in
    between builds on A's text (B's copy had it, replicated): it comes before A's snapshot in
    the log now, and integrates once the snapshot is applied."""
    import psycopg

    store = HeldPostgresStore(postgres_dsn, commit_window=0.001, compact_after=10**6)
    store.release.set()
    other_hub = PostgresStore(postgres_dsn, commit_window=0.001)
    await store.open()
    await other_hub.open()
    late = await psycopg.AsyncConnection.connect(postgres_dsn)
    try:
        room = await open_room(store, stored=5)
        text = room.doc.get("text", type=Text)

        def other_client(key: str) -> bytes:
            doc = Doc()
            doc.get("map", type=Map)[key] = key
            return doc.get_update()

        # B's transaction takes its id now and commits after A's rows.
        cur = await late.execute(
            "INSERT INTO roomhub_updates (doc, data, created) VALUES ('doc', %s, 0) RETURNING id",
            (other_client("late"),),
        )
        (late_id,) = await cur.fetchone()
        text += "a,"
        room._flush()
        await store.flush()
        copy = Doc()  # hub B's copy of the document: A's text replicated to it
        copy.apply_update(room.doc.get_update())
        before = copy.get_state()
        copy.get("text", type=Text).insert(1, "B")
        copy.get("map", type=Map)["between"] = "between"
        other_hub.append("doc", copy.get_update(before))
        await other_hub.flush()
        text += "b,"
        room._flush()
        await store.flush()
        await late.commit()
        expected = Doc()  # every update, once: what each copy shows once replication is done
        for update in (room.doc.get_update(), copy.get_update(), other_client("late")):
            expected.apply_update(update)
        result = await store.compact("doc")
        assert store.replays == 0 and len(store.snapshots) == 1
        assert result is not None and result.updates == 3  # the snapshot and B's two rows
        with psycopg.connect(postgres_dsn) as db:
            snapshot_id = db.execute("SELECT id FROM roomhub_updates WHERE snapshot").fetchone()[0]
        assert late_id < snapshot_id  # committed after A's rows up to the snapshot's id
        loaded = Doc()
        assert load_into(loaded, await store.load("doc")) == []  # nothing waits
        assert str(loaded.get("text", type=Text)) == str(expected.get("text", type=Text))
        assert str(expected.get("text", type=Text)).replace("B", "") == str(text)
        assert loaded.get("map", type=Map).to_py() == {"late": "late", "between": "between"}
        await room.on_teardown()
    finally:
        await late.close()
        await other_hub.close()
        await store.close()


async def test_postgres_room_keeps_a_row_another_hub_rewrote_since_it_saw_it(postgres_dsn):
    """Hub B's replay compaction rewrites a row A's room holds into a snapshot that also holds
    B's row, which A's room never applied. A's next compaction from its state sees that row
    rewritten (a new xmin) and keeps it as it is: B's row is not lost; the rows A's room still
    holds are replaced by its state."""
    store = HeldPostgresStore(postgres_dsn, commit_window=0.001, compact_after=10**6)
    store.release.set()
    other_hub = PostgresStore(postgres_dsn, commit_window=0.001, compact_after=10**6)
    await store.open()
    await other_hub.open()
    try:
        room = await open_room(store)
        text = room.doc.get("text", type=Text)

        def commit(word: str):
            nonlocal text
            text += word
            room._flush()
            return store.flush()

        def stored() -> tuple[str, dict]:
            doc = Doc()
            load_into(doc, rows)
            return str(doc.get("text", type=Text)), doc.get("map", type=Map).to_py()

        await commit("a,")
        b = Doc()
        b.get("map", type=Map)["b"] = "b"
        other_hub.append("doc", b.get_update())
        await other_hub.flush()
        assert (await other_hub.compact("doc")).updates == 1  # A's row rewritten, B's deleted
        for word in ("c,", "d,", "e,"):
            await commit(word)
        result = await store.compact("doc")
        rows = await store.load("doc")
        assert stored() == ("a,c,d,e,", {"b": "b"})
        assert store.replays == 0 and store.written == 1
        assert result.updates == len(rows) == 2  # B's snapshot (with A's "a,") and A's state
        await commit("f,")
        await store.compact("doc")
        rows = await store.load("doc")
        assert stored() == ("a,c,d,e,f,", {"b": "b"}) and len(rows) == 2
        assert store.replays == 0 and store.written == 2
        await room.on_teardown()
    finally:
        await other_hub.close()
        await store.close()
