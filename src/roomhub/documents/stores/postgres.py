"""The PostgreSQL store: documents durable outside any hub, shared by every hub of a cluster.

Layout: one table ``roomhub_updates(id, doc, data, snapshot, created)``; a
document is its rows ordered by ``id``. Connections come from a psycopg 3
asynchronous pool (``psycopg_pool.AsyncConnectionPool``); the store needs the
``cluster`` extra (``pip install 'roomhub[cluster]'``).

- **group commit** (:mod:`.group_commit`, as the SQLite store): updates
  queued during ``commit_window`` seconds are written in one transaction
  (``COPY``: one round trip and one WAL flush for the batch).
- **compaction from the live room** (:mod:`.group_commit`): while a document's room is open
  in this hub, the store keeps the id and ``xmin`` (the id of the transaction that wrote the
  row's version) of every row the room's state holds: the rows its load read and the rows
  this store committed for it since. In one transaction that holds the document's advisory
  lock (``pg_advisory_xact_lock``: two hubs never compact one document at once), those rows
  are locked and checked, the last of them takes the room's state (a snapshot row, in its
  place) and the others are deleted *by id*. No row is read or decoded. Every other row is
  kept where it is: another hub's rows (documents are replicated: every hub with clients of
  a document stores their updates), which this room may not have applied, whatever their
  id. Why not SQLite's cut at the last id committed: ids come from a sequence all hubs
  share, and a transaction that took a smaller id may commit after one that took a larger,
  so rows of another hub below that id may be missing from the state, committed before the
  cut or even after it. A row the room held that another hub's compaction rewrote since (a
  new ``xmin``: its snapshot may hold rows this room never applied) is not the room's any
  more and is kept as it is, as a row gone meanwhile is forgotten; with none of its rows
  left the log is replayed. Loading applies the kept rows and the snapshot in id order, as a
  hub applies replicated updates in whatever order they come: nothing waits in the state,
  so a kept row that builds on it integrates once the snapshot is applied.
- **compaction** otherwise: in one transaction that holds the document's advisory lock,
  read the document's rows, squash the prefix :func:`~.base.squash_prefix`
  finds, write the snapshot into the prefix's first rows (keeping their ids,
  so the snapshot stays in front of every row it does not hold) and delete
  the prefix's other rows *by id*. Rows another hub commits meanwhile are not
  among the rows read, so they are neither deleted nor rewritten: a
  concurrent writer loses nothing (a delete by id range would delete a row
  committed between the read and the delete). A transaction interrupted at
  any point leaves the old rows.
- **several hubs**: every hub appends and loads through the same table; the
  schema is created under a transaction-wide advisory lock, so hubs starting
  together do not race on ``CREATE TABLE``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from .base import SnapshotSource, StoredDocument, squash_prefix
from .group_commit import Entry, GroupCommitStore, Row, merged_rows

log = logging.getLogger("roomhub.documents.postgres")

TABLE = "roomhub_updates"
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id BIGSERIAL PRIMARY KEY,
    doc TEXT NOT NULL,
    data BYTEA NOT NULL,
    snapshot BOOLEAN NOT NULL DEFAULT false,
    created DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS {TABLE}_doc ON {TABLE} (doc, id);
"""
LOCK_CLASS = 0x726F6F6D  # "room": the first key of roomhub's advisory locks (the second: the document)
LOCK = "SELECT pg_advisory_xact_lock(%s, hashtext(%s))"  # a document's compaction lock
LOAD = f"SELECT id, xmin::text, data FROM {TABLE} WHERE doc = %s ORDER BY id"

Held = dict[int, str]
"""Rows of a document that its live room's state holds: row id -> ``xmin`` (as text)."""


def describe(dsn: str) -> str:
    """``user@host:port/dbname`` of a connection string, without its password (for logs)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        info = conninfo_to_dict(dsn)
    except Exception:
        return "<unparsable dsn>"
    return (f"{info.get('user', '')}@{info.get('host', '')}:{info.get('port', 5432)}"
            f"/{info.get('dbname', '')}")


class PostgresStore(GroupCommitStore):
    """Documents in the PostgreSQL database ``dsn`` (a libpq connection string or
    ``postgresql://`` URI; see the module's description).

    ``commit_window`` is in seconds, ``compact_after`` a row count per document, ``pool_size``
    the most connections the store opens. :meth:`open` raises ``ConnectionError`` naming the
    database (never its password) when it cannot be reached within ``connect_timeout`` seconds.
    """

    name = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        commit_window: float = 0.05,
        max_batch: int = 2000,
        compact_after: int = 500,
        pool_size: int = 4,
        connect_timeout: float = 10.0,
    ) -> None:
        super().__init__(commit_window=commit_window, max_batch=max_batch, compact_after=compact_after)
        self.dsn = dsn
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self._pool: Any = None  # psycopg_pool.AsyncConnectionPool once open
        self._loaded: dict[str, Held] = {}  # the rows a room's load read, until it attaches
        self._held: dict[str, Held] = {}  # per attached document: the rows its state holds

    async def open(self) -> None:
        from psycopg import OperationalError
        from psycopg_pool import AsyncConnectionPool, PoolTimeout

        pool = AsyncConnectionPool(
            self.dsn, min_size=1, max_size=self.pool_size, open=False, timeout=self.connect_timeout,
            name="roomhub-documents",
        )
        try:
            await pool.open(wait=True, timeout=self.connect_timeout)
            async with pool.connection() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (LOCK_CLASS,))
                await conn.execute(SCHEMA)
        except (PoolTimeout, OperationalError, OSError) as exc:
            await pool.close()
            raise ConnectionError(
                f"PostgreSQL document store {describe(self.dsn)} not reachable: {exc}"
            ) from None
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        log.info("documents store: PostgreSQL %s (commit window %.0f ms)",
                 describe(self.dsn), self.commit_window * 1000)

    async def write_batch(self, batch: list[Entry]) -> tuple[list[Row], dict[str, tuple[int, int]]]:
        # Runs are merged in a worker thread: the merge is CPU work the event loop need not do.
        rows = await asyncio.to_thread(merged_rows, batch)
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor()
            async with cur.copy(f"COPY {TABLE} (doc, data, created) FROM STDIN") as copy:
                for row in rows:
                    await copy.write_row(row)
            names = sorted({name for name, _, _ in rows})
            # With the counts, the ids of this transaction's rows (COPY returns none): those of
            # an attached document are rows its room's state holds.
            await cur.execute(
                f"SELECT doc, count(*), max(id), pg_current_xact_id()::xid::text,"
                f" array_agg(id) FILTER (WHERE xmin = pg_current_xact_id()::xid)"
                f" FROM {TABLE} WHERE doc = ANY(%s) GROUP BY doc",
                (names,),
            )
            found = await cur.fetchall()
        for doc, _, _, xmin, ids in found:
            held = self._held.get(doc)
            if held is not None:
                held.update(dict.fromkeys(ids, xmin))
        return rows, {doc: (count, last) for doc, count, last, _, _ in found}

    async def _load_rows(self, name: str) -> list[tuple[int, str, bytes]]:
        """Every row of ``name``, oldest first: id, ``xmin`` (text), update."""
        if self.pending(name):
            await self.flush()
        async with self._pool.connection() as conn:
            cur = await conn.execute(LOAD, (name,))
            return await cur.fetchall()

    async def load(self, name: str) -> list[bytes]:
        return [data for _, _, data in await self._load_rows(name)]

    async def load_whole(self, name: str) -> tuple[list[bytes], bool]:
        # A room loads through here and then attaches (the registry serialises a name's rooms):
        # the rows read are the ones its state will hold.
        rows = await self._load_rows(name)
        self._loaded[name] = {row_id: xmin for row_id, xmin, _ in rows}
        return [data for _, _, data in rows], False

    def attach(self, name: str, source: SnapshotSource) -> None:
        super().attach(name, source)
        self._held[name] = self._loaded.pop(name, {})

    def detach(self, name: str, source: SnapshotSource) -> None:
        if self._sources.get(name) == source:
            self._held.pop(name, None)
        super().detach(name, source)

    def held_rows(self, name: str) -> tuple[Held, list[tuple[int, str]]] | None:
        """The attached room's :data:`Held` rows of ``name`` (the dict itself, to update after
        the compaction) and a copy of them as of now, sorted by id; None if it holds none."""
        held = self._held.get(name)
        if not held:
            return None
        return held, sorted(held.items())

    async def compact_snapshot(
        self, name: str, snapshot: bytes, held: tuple[Held, list[tuple[int, str]]]
    ) -> StoredDocument | None:
        live, seen = held
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(LOCK, (LOCK_CLASS, name))
            # Locked (a delete waits for this transaction), then compared: a row rewritten by
            # another hub's compaction since the room saw it (a new xmin) may now hold rows this
            # room never applied, so it is not the room's any more and is kept as it is, like a
            # row gone meanwhile; the rows unchanged are still exactly what the room applied.
            # (A row's xmin changes with each new version of it, the one way its data changes;
            # should anything else change it, the row is kept: never one lost, one kept more.)
            # By id alone (ids are unique across documents): with the document's name too, the
            # planner may scan the (doc, id) index and test each row against the whole list,
            # which grows with the square of the rows (1.3 s for 30,000, against 55 ms).
            cur = await conn.execute(
                f"SELECT id, xmin::text FROM {TABLE} WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
                ([row_id for row_id, _ in seen],),
            )
            found = await cur.fetchall()
            rows = found if found == seen else sorted(set(found) & set(seen))
            if not rows:
                self._forget(name, live, seen)
                return None
            ids = [row_id for row_id, _ in rows]
            xmin = rows[-1][1]
            if len(rows) > 1:  # a row is rewritten only to shrink the log
                cur = await conn.execute(
                    f"UPDATE {TABLE} SET data = %s, snapshot = true, created = %s WHERE id = %s"
                    f" RETURNING xmin::text",
                    (snapshot, time.time(), ids[-1]),
                )
                (xmin,) = await cur.fetchone()
                await conn.execute(f"DELETE FROM {TABLE} WHERE id = ANY(%s)", (ids[:-1],))
            cur = await conn.execute(
                f"SELECT count(*), coalesce(sum(length(data)), 0) FROM {TABLE} WHERE doc = %s",
                (name,),
            )
            count, size = await cur.fetchone()
        if self._forget(name, live, seen):
            live[ids[-1]] = xmin
        return StoredDocument(name, count, int(size))

    def _forget(self, name: str, live: Held, seen: list[tuple[int, str]]) -> bool:
        """Remove the rows ``seen`` from ``live`` if it is still the attached room's rows of
        ``name`` (the room may have left meanwhile); whether it is."""
        if self._held.get(name) is not live:
            return False
        for row_id, _ in seen:
            live.pop(row_id, None)
        return True

    async def compact_rows(self, name: str) -> StoredDocument | None:
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(LOCK, (LOCK_CLASS, name))
            cur = await conn.execute(f"SELECT id, data FROM {TABLE} WHERE doc = %s ORDER BY id", (name,))
            rows: list[tuple[int, bytes]] = await cur.fetchall()
            if not rows:
                return None
            updates = [data for _, data in rows]
            head, cut = squash_prefix(updates)
            if head:
                ids = [row_id for row_id, _ in rows[:cut]]
                async with conn.cursor() as cur:
                    await cur.executemany(
                        f"UPDATE {TABLE} SET data = %s, snapshot = %s WHERE id = %s",
                        [(data, i == 0, ids[i]) for i, data in enumerate(head)],
                    )
                    await cur.execute(f"DELETE FROM {TABLE} WHERE id = ANY(%s)", (ids[len(head):],))
                updates = [*head, *updates[cut:]]
            # The rows it rewrote may now hold rows of other hubs that a live room never applied:
            # their new xmin tells the room's next compaction (compact_snapshot) to keep them.
            return StoredDocument(name, len(updates), sum(map(len, updates)))

    async def delete(self, name: str) -> bool:
        await self.flush()
        self.compacted(name, None)
        async with self._pool.connection() as conn:
            cur = await conn.execute(f"DELETE FROM {TABLE} WHERE doc = %s", (name,))
            return cur.rowcount > 0

    async def documents(self) -> list[StoredDocument]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT doc, count(*), coalesce(sum(length(data)), 0) FROM {TABLE} GROUP BY doc ORDER BY doc"
            )
            return [StoredDocument(name, count, int(size)) for name, count, size in await cur.fetchall()]

    async def close(self) -> None:
        if self._pool is None:
            return
        await self.drain()
        await self._pool.close()
        self._pool = None
        log.info("documents store closed: everything flushed to PostgreSQL %s", describe(self.dsn))
