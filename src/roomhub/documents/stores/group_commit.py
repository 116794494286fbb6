"""Group commit, the write path every database store shares (SQLite, PostgreSQL).

:meth:`GroupCommitStore.append` only queues an update; the first queued update
arms a timer of ``commit_window`` seconds, after which every queued update is
written by one call of the store's :meth:`~GroupCommitStore.write_batch` (one
transaction: one fsync however many updates it holds). ``max_batch`` queued
updates are written at once without waiting. One writer task runs at a time:
updates queued while it writes form the next batch, so batches grow with the
load instead of the number of transactions. A batch that fails is queued again
in front of the newer updates (their order kept) and retried after a pause.
A crash loses at most the updates of the open window.

Runs: the updates a room marks mergeable (:meth:`~.base.DocumentStore.append_mergeable`)
that follow each other in one document's queue are one entry, written as one row, their
merge: fewer rows to insert, to read at a load and to compact. An update appended alone
(some of its structs wait for others) ends the document's run and gets its own row.

Updates are committed in the order they were appended, so a count of updates
committed says which are durable: :meth:`GroupCommitStore.flush` waits for
the updates appended before it was called, batch by batch, never for a queue
that other writers keep filling (it would wait as long as they write).

After each batch, a document whose row count grew by ``compact_after`` since its
last compaction is compacted in a task of its own (:meth:`DocumentStore.compact`).

Compaction from a live room's state: a room open in this hub attaches its document
(:meth:`~.base.DocumentStore.attach`). Its document then holds every row this store wrote
for it and every row its load read, so those rows can be replaced by the document's own
encoding, taken on the event loop right after a commit (or at the compaction call), with no
replay of the log (:meth:`GroupCommitStore.compact_snapshot`; one transaction, rows
committed after that point are kept after the snapshot, whatever they hold, and stay after it
on a load: applying what the snapshot already holds again changes nothing). Which rows the
state holds is the store's to say (:meth:`GroupCommitStore.held_rows`): a store that is its
file's only writer (SQLite, :attr:`GroupCommitStore.sole_writer`) names the last row it
committed, since every row up to it is the room's; a store other writers add rows to
(PostgreSQL, several hubs) names the very rows the room loaded or this store committed for it.
When the room cannot vouch for its state (an update waits, a deletion of an item it lacks),
the store cannot say which rows it holds, or no room is live, the log is replayed as before.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

from .base import DocumentStore, SnapshotSource, StoredDocument, merge

log = logging.getLogger("roomhub.documents.store")

Row = tuple[str, bytes, float]
"""A row to write: document name, Yjs v1 update, time it was queued (seconds since the epoch)."""

Entry = tuple[str, "bytes | list[bytes]", float]
"""A queued write: a :data:`Row`, or in its place a run of mergeable updates of one document
(:meth:`~.base.DocumentStore.append_mergeable`), a list that grows until its batch is taken."""


def merged_rows(batch: list[Entry]) -> list[Row]:
    """The rows ``batch`` writes: each run merged into one update (pycrdt's ``merge_updates``;
    CPU work, so a store calls it where it writes, off the event loop when it can)."""
    return [(name, data if isinstance(data, bytes) else merge(data), queued)
            for name, data, queued in batch]


class GroupCommitStore(DocumentStore):
    """A store whose writes are grouped (see the module); subclasses write a batch and compact.

    ``commit_window`` is in seconds, ``max_batch`` in updates, ``compact_after`` in rows per
    document.
    """

    sole_writer = False
    """True for a store no other process writes to: rows of a document up to one this store
    committed are then all rows its live room applied (:meth:`held_rows` names the last)."""

    def __init__(self, *, commit_window: float, max_batch: int, compact_after: int) -> None:
        self.commit_window = commit_window
        self.max_batch = max_batch
        self.compact_after = compact_after
        self._pending: list[Entry] = []
        self._runs: dict[str, list[bytes]] = {}  # each document's open run, queued in _pending
        self._timer: asyncio.TimerHandle | None = None
        self._writer: asyncio.Task[None] | None = None
        self._compacting: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._compacted_rows: dict[str, int] = {}  # rows a document's last compaction left
        self._last_rows: dict[str, int] = {}  # each document's last committed row id
        self._sources: dict[str, SnapshotSource] = {}  # live rooms' states (attach)
        self._appended = 0  # updates appended since the store was made
        self._committed = 0  # of those, the first ones written (in append order)
        self._batch_done = asyncio.Event()  # set, and replaced, after each batch written or failed

    @abc.abstractmethod
    async def write_batch(
        self, batch: list[Entry]
    ) -> tuple[list[Row], dict[str, tuple[int, int]]]:
        """Write ``batch`` (its runs merged: :func:`merged_rows`) in one transaction, in its
        order; the rows written and, per document, its row count after it and its last row's
        id. An exception leaves nothing of the batch written (it is retried)."""

    @abc.abstractmethod
    async def compact_rows(self, name: str) -> StoredDocument | None:
        """Replace ``name``'s rows by fewer in one transaction (see :meth:`compact`); what is
        left, or None for a document with no rows."""

    async def compact_snapshot(self, name: str, snapshot: bytes, held: Any) -> StoredDocument | None:
        """Replace the rows of ``name`` that ``held`` names (what :meth:`held_rows` returned when
        ``snapshot`` was taken) by ``snapshot``, one Yjs update that holds them all, in one
        transaction, keeping every other row; what is left, or None when it cannot (the rows it
        names are gone or were rewritten: a replay compaction or a delete came first; then
        nothing changed and the log is replayed). This one cannot (None)."""
        return None

    def held_rows(self, name: str) -> Any:
        """Which rows of ``name`` the live room's state holds, in the shape
        :meth:`compact_snapshot` takes; called on the loop when the state is taken. None: this
        store cannot tell (no compaction from the state). This one: for a :attr:`sole_writer`
        store, the id of the last row of ``name`` committed (an ``int``; every row up to it is
        the room's), else None."""
        return self._last_rows.get(name) if self.sole_writer else None

    def attach(self, name: str, source: SnapshotSource) -> None:
        self._sources[name] = source

    def detach(self, name: str, source: SnapshotSource) -> None:
        if self._sources.get(name) == source:  # bound methods: equal, not identical
            del self._sources[name]

    def _snapshot(self, name: str) -> tuple[bytes, Any] | None:
        """The live room's state of ``name`` and the rows it holds (:meth:`held_rows`), taken
        now (on the loop: no row of it can be committed meanwhile), or None (see the module)."""
        source = self._sources.get(name)
        held = None if source is None else self.held_rows(name)
        if held is None:
            return None
        state = source()
        return None if state is None else (state, held)

    async def compact(self, name: str) -> StoredDocument | None:
        return await self._compact(name, self._snapshot(name))

    async def _compact(self, name: str, snapshot: tuple[bytes, Any] | None) -> StoredDocument | None:
        self._compacting.add(name)
        try:
            started = time.perf_counter()
            result = None
            if snapshot is not None:
                result = await self.compact_snapshot(name, *snapshot)
            if result is None:
                result = await self.compact_rows(name)
            if result is not None:
                self.compacted(name, result.updates)
                if self.metrics is not None:
                    self.metrics.compactions.inc()
                log.debug("%s: compacted %s to %d bytes in %.1f ms", self.name, name, result.bytes,
                          (time.perf_counter() - started) * 1000)
            return result
        finally:
            self._compacting.discard(name)

    def committed(self, batch: list[Row], counts: dict[str, tuple[int, int]]) -> None:
        """Called after each batch written: starts the compactions it makes due."""
        for name, (count, last) in counts.items():
            self._last_rows[name] = last
            grown = count - self._compacted_rows.get(name, 0)
            if grown >= self.compact_after and name not in self._compacting:
                # The room's state is taken here, before the next batch is written.
                self._compacting.add(name)
                self.spawn(self._compact(name, self._snapshot(name)))

    # -- group commit ---------------------------------------------------------
    def append(self, name: str, update: bytes) -> None:
        self._runs.pop(name, None)  # an update alone ends the document's run
        self._queue((name, update, time.time()))

    def append_mergeable(self, name: str, update: bytes) -> None:
        run = self._runs.get(name)
        if run is not None:  # written with its run's entry, which flush() already counts
            run.append(update)
            return
        run = self._runs[name] = [update]
        self._queue((name, run, time.time()))

    def _queue(self, entry: Entry) -> None:
        # Entries, not updates, are counted: a run is written whole with its entry.
        self._pending.append(entry)
        self._appended += 1
        if len(self._pending) >= self.max_batch:
            self._kick()
        elif self._timer is None and (self._writer is None or self._writer.done()):
            self._timer = asyncio.get_running_loop().call_later(self.commit_window, self._kick)

    def _kick(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop(), name=f"{self.name}-group-commit")

    async def _write_loop(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            self._runs.clear()  # the runs in this batch are closed: later updates start new ones
            try:
                started = time.perf_counter()
                rows, counts = await self.write_batch(batch)
                if self.metrics is not None:
                    self.metrics.store_commit.observe(time.perf_counter() - started)
                    self.metrics.store_batch.observe(len(batch))
            except Exception:
                log.exception("%s: writing %d updates failed; they are queued again", self.name, len(batch))
                self._pending[:0] = batch
                self._batch_finished()
                await asyncio.sleep(max(self.commit_window, 0.5))
                continue
            self._committed += len(batch)
            self._batch_finished()
            self.committed(rows, counts)

    def _batch_finished(self) -> None:
        done, self._batch_done = self._batch_done, asyncio.Event()
        done.set()

    def writing(self) -> bool:
        """True while a batch is being written."""
        return self._writer is not None and not self._writer.done()

    def pending(self, name: str) -> bool:
        """True if an update of ``name`` is queued and not written yet."""
        return any(row[0] == name for row in self._pending)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in a task that :meth:`drain` waits for."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        target = self._appended
        while self._committed < target:
            self._kick()
            await self._batch_done.wait()

    async def drain(self) -> None:
        """Flush, then wait for the compactions started so far (for ``close``)."""
        await self.flush()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def compacted(self, name: str, rows: int | None) -> None:
        """Record that ``name`` was compacted to ``rows`` rows (None: forgotten)."""
        if rows is None:
            self._compacted_rows.pop(name, None)
            self._last_rows.pop(name, None)
        else:
            self._compacted_rows[name] = rows
