"""The default store: one SQLite file in WAL mode, group commit, atomic compaction.

Layout: one table ``updates(id, doc, data, snapshot, created)``; a document is
its rows ordered by ``id``. Writes go through one worker thread that owns the
connection:

- **group commit**: :meth:`SQLiteStore.append` only queues; the first queued
  update arms a timer of ``commit_window`` seconds (default 0.05), after
  which every queued update is written in one transaction (one fsync with
  ``synchronous = "full"``). ``max_batch`` queued updates commit at once
  without waiting. A crash loses at most the updates of the open window.
- **runs**: the updates a room marks mergeable (:meth:`~.base.DocumentStore.append_mergeable`:
  nothing of the document waited) that follow each other in one document's
  log are written as one row, their merge, made in the worker thread: fewer
  rows to insert, to read at a load and to compact. An update appended alone
  (some of its structs wait) ends the document's run and gets its own row.
- **compaction from the live room** (:mod:`.group_commit`): the file has one writer, this
  store, so while a document's room is open its state holds every row up to the last one
  committed; in one ``BEGIN IMMEDIATE`` transaction those rows are deleted and the state
  takes the last one's id and place (a snapshot row), the rows committed after it stay.
  No row is read or decoded.
- **compaction** otherwise: in one ``BEGIN IMMEDIATE`` transaction, read a document's
  rows, squash them (:func:`~.base.squash`: a Doc's state with the same
  client ids, so nothing is duplicated, then the rows from the first one
  whose structs still wait, as they are, so replaying the rows builds the
  same document), delete exactly the rows read and insert the result.
  Killed at any point, SQLite's WAL rolls the transaction back: the old rows
  are all there, or the squashed rows alone. Documents are compacted once
  they have ``compact_after`` rows more than their last compaction left,
  and when their room is evicted.
- **loads**: a document known to hold at most :data:`INLINE_LOAD_BYTES` is read
  on the event loop's thread through a second, read-only connection (WAL
  readers never wait for the writer); the two thread hand-overs of a load in
  the worker cost more than that read (about 0.4 ms, and up to 3 ms on a busy
  machine, against 30-250 us, and 0.15-0.5 ms for a document of 100,000
  one-character updates, 870 KiB once compacted, which its room then spends
  about as long decoding on the loop anyway). A document whose size is not
  known yet (first load since start) or larger is read in the worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

from .base import StoredDocument, squash
from .group_commit import Entry, GroupCommitStore, Row, merged_rows

log = logging.getLogger("roomhub.documents.sqlite")

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS updates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    doc TEXT NOT NULL,
    data BLOB NOT NULL,
    snapshot INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS updates_doc ON updates (doc, id);
"""
COUNT = "SELECT count(*), max(id) FROM updates WHERE doc = ?"
LOAD = "SELECT data, snapshot FROM updates WHERE doc = ? ORDER BY id"
INLINE_LOAD_BYTES = 1024 * 1024
"""Stored bytes up to which a document is read on the event loop's thread (see the module)."""


class SQLiteFile:
    """The synchronous half: every method runs in the store's single worker thread."""

    def __init__(self, path: Path, synchronous: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        self.db.execute("PRAGMA busy_timeout = 5000")
        self.db.executescript(SCHEMA)

    def write(self, batch: list[tuple[str, bytes, float]]) -> dict[str, tuple[int, int]]:
        """Append a batch in one transaction; returns each document's row count after it and
        its last row's id."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO updates (doc, data, created) VALUES (?, ?, ?)", batch)
            names = {name for name, _, _ in batch}
            counts = {
                name: db.execute(COUNT, (name,)).fetchone() for name in names
            }
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return counts

    def load(self, name: str) -> list[tuple[bytes, int]]:
        """Each row's update and snapshot flag, oldest first."""
        return self.db.execute(LOAD, (name,)).fetchall()

    def compact(self, name: str) -> StoredDocument | None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            rows = db.execute(
                "SELECT id, data FROM updates WHERE doc = ? ORDER BY id", (name,)
            ).fetchall()
            if not rows:
                db.execute("ROLLBACK")
                return None
            if len(rows) == 1:
                db.execute("ROLLBACK")
                return StoredDocument(name, 1, len(rows[0][1]))
            log = [data for _, data in rows]
            compacted = squash(log)
            if compacted is log:  # nothing to compact: every row but the first still waits
                db.execute("ROLLBACK")
                return StoredDocument(name, len(log), sum(map(len, log)))
            last = rows[-1][0]
            db.execute("DELETE FROM updates WHERE doc = ? AND id <= ?", (name, last))
            now = time.time()
            db.executemany(
                "INSERT INTO updates (doc, data, snapshot, created) VALUES (?, ?, ?, ?)",
                [(name, data, int(i == 0), now) for i, data in enumerate(compacted)],
            )
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        return StoredDocument(name, len(compacted), sum(map(len, compacted)))

    def compact_snapshot(self, name: str, snapshot: bytes, upto: int) -> StoredDocument | None:
        """Rows of ``name`` up to id ``upto`` replaced by ``snapshot``, which takes that row's id
        (so it stays in front of the rows after it), in one transaction; None if row ``upto``
        is not ``name``'s any more (then nothing changed)."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT doc FROM updates WHERE id = ?", (upto,)).fetchone()
            if row is None or row[0] != name:
                db.execute("ROLLBACK")
                return None
            if db.execute("DELETE FROM updates WHERE doc = ? AND id < ?", (name, upto)).rowcount == 0:
                # One row up to there: nothing to compact (a row is rewritten only to shrink the log).
                db.execute("ROLLBACK")
                count, size = db.execute(
                    "SELECT count(*), sum(length(data)) FROM updates WHERE doc = ?", (name,)
                ).fetchone()
                return StoredDocument(name, count, size)
            db.execute("UPDATE updates SET data = ?, snapshot = 1, created = ? WHERE id = ?",
                       (snapshot, time.time(), upto))
            count, size = db.execute(
                "SELECT count(*), sum(length(data)) FROM updates WHERE doc = ?", (name,)
            ).fetchone()
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        return StoredDocument(name, count, size)

    def delete(self, name: str) -> bool:
        cur = self.db.execute("DELETE FROM updates WHERE doc = ?", (name,))
        return cur.rowcount > 0

    def documents(self) -> list[StoredDocument]:
        rows = self.db.execute(
            "SELECT doc, count(*), sum(length(data)) FROM updates GROUP BY doc ORDER BY doc"
        )
        return [StoredDocument(name, count, size or 0) for name, count, size in rows]

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.close()


class SQLiteStore(GroupCommitStore):
    """Documents in the SQLite file ``path`` (see the module's description).

    ``commit_window`` is in seconds; ``synchronous`` is SQLite's pragma
    (``"full"``: every commit is fsynced; ``"normal"``: safe against a killed
    process, not a power loss); ``compact_after`` is a row count per document.
    """

    name = "sqlite"
    sole_writer = True  # one hub owns its file: every row of a document is its room's

    def __init__(
        self,
        path: Path,
        *,
        commit_window: float = 0.05,
        max_batch: int = 2000,
        synchronous: Literal["normal", "full"] = "full",
        compact_after: int = 500,
    ) -> None:
        super().__init__(commit_window=commit_window, max_batch=max_batch, compact_after=compact_after)
        self.path = path
        self.synchronous = synchronous
        self._file: SQLiteFile | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._reader: sqlite3.Connection | None = None  # read-only, used on the loop's thread
        self._stored_bytes: dict[str, int] = {}  # per document, once known (see load)

    async def _run(self, fn: Any, *args: Any) -> Any:
        assert self._executor is not None, "store not open"
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="roomhub-sqlite")
        self._file = await self._run(SQLiteFile, self.path, self.synchronous)
        self._reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._reader.execute("PRAGMA query_only = 1")
        log.info("documents store: %s (WAL, commit window %.0f ms)",
                 self.path, self.commit_window * 1000)

    # -- group commit (the queue, runs and the writer task: .group_commit) -----
    async def write_batch(self, batch: list[Entry]) -> tuple[list[Row], dict[str, tuple[int, int]]]:
        return await self._run(self._file_write, batch)

    def committed(self, batch: list[Row], counts: dict[str, tuple[int, int]]) -> None:
        sizes = self._stored_bytes
        for name, update, _ in batch:
            if name in sizes:
                sizes[name] += len(update)
        super().committed(batch, counts)

    def _file_write(self, batch: list[Entry]) -> tuple[list[Row], dict[str, tuple[int, int]]]:
        """In the worker thread: merge each run, write the batch; the rows and the counts."""
        assert self._file is not None
        rows = merged_rows(batch)
        return rows, self._file.write(rows)

    # -- reads and maintenance -------------------------------------------------
    async def load(self, name: str) -> list[bytes]:
        return (await self.load_whole(name))[0]

    async def load_whole(self, name: str) -> tuple[list[bytes], bool]:
        # Whole: the log is one row a compaction wrote as the state of a Doc in which nothing
        # waited (its ``snapshot`` flag; the rows that still waited, if any, would follow it).
        if any(pending[0] == name for pending in self._pending):
            await self.flush()
        assert self._file is not None and self._reader is not None
        size = self._stored_bytes.get(name)
        writing = self._writer is not None and not self._writer.done()  # a batch may hold ``name``
        if size is not None and size <= INLINE_LOAD_BYTES and not writing and name not in self._compacting:
            rows = self._reader.execute(LOAD, (name,)).fetchall()
        else:
            rows = await self._run(self._file.load, name)
        updates = [row[0] for row in rows]
        self._stored_bytes[name] = sum(map(len, updates))
        return updates, len(rows) == 1 and rows[0][1] == 1

    async def compact_rows(self, name: str) -> StoredDocument | None:
        assert self._file is not None
        return self._stored(name, await self._run(self._file.compact, name))

    async def compact_snapshot(self, name: str, snapshot: bytes, upto: int) -> StoredDocument | None:
        assert self._file is not None
        result = await self._run(self._file.compact_snapshot, name, snapshot, upto)
        return result if result is None else self._stored(name, result)

    def _stored(self, name: str, result: StoredDocument | None) -> StoredDocument | None:
        """Record the size a compaction left (the size decides where a load reads)."""
        self._stored_bytes.pop(name, None)
        if result is not None:
            self._stored_bytes[name] = result.bytes
        return result

    async def delete(self, name: str) -> bool:
        await self.flush()
        assert self._file is not None
        self._stored_bytes.pop(name, None)
        self.compacted(name, None)
        return await self._run(self._file.delete, name)

    async def ping(self) -> None:
        if self._file is None:
            raise OSError("the store is not open")
        await asyncio.wait_for(self._run(self._file.db.execute, "SELECT 1"), 5.0)

    async def documents(self) -> list[StoredDocument]:
        assert self._file is not None
        return await self._run(self._file.documents)

    async def close(self) -> None:
        if self._file is None:
            return
        await self.flush()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        await self._run(self._file.close)
        self._file = None
        assert self._executor is not None
        self._executor.shutdown(wait=True)
        log.info("documents store closed: everything flushed to %s", self.path)
