"""The PostgreSQL store: documents durable outside any hub, shared by every hub of a cluster.

Layout: one table ``roomhub_updates(id, doc, data, snapshot, created)``; a
document is its rows ordered by ``id``. Connections come from a psycopg 3
asynchronous pool (``psycopg_pool.AsyncConnectionPool``); the store needs the
``cluster`` extra (``pip install 'roomhub[cluster]'``).

- **group commit** (:mod:`.group_commit`, as the SQLite store): updates
  queued during ``commit_window`` seconds are written in one transaction
  (``COPY``: one round trip and one WAL flush for the batch).
- **compaction**: in one transaction that holds the document's advisory lock
  (``pg_advisory_xact_lock``: two hubs never compact one document at once),
  read the document's rows, squash the prefix :func:`~.base.squash_prefix`
  finds, write the snapshot into the prefix's first rows (keeping their ids,
  so the snapshot stays in front of every row it does not hold) and delete
  the prefix's other rows *by id*. Rows another hub commits meanwhile are not
  among the rows read, so they are neither deleted nor rewritten: a
  concurrent writer loses nothing (a delete by id range would delete a row
  committed between the read and the delete). A transaction interrupted at
  any point leaves the old rows. Never from a live room's state alone (other hubs write
  rows of the same document that this hub's room may not have applied yet).
- **several hubs**: every hub appends and loads through the same table; the
  schema is created under a transaction-wide advisory lock, so hubs starting
  together do not race on ``CREATE TABLE``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .base import StoredDocument, squash_prefix
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
LOAD = f"SELECT data FROM {TABLE} WHERE doc = %s ORDER BY id"


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
            await cur.execute(
                f"SELECT doc, count(*), max(id) FROM {TABLE} WHERE doc = ANY(%s) GROUP BY doc",
                (names,),
            )
            return rows, {doc: (count, last) for doc, count, last in await cur.fetchall()}

    async def load(self, name: str) -> list[bytes]:
        if self.pending(name):
            await self.flush()
        async with self._pool.connection() as conn:
            cur = await conn.execute(LOAD, (name,))
            return [row[0] for row in await cur.fetchall()]

    async def compact_rows(self, name: str) -> StoredDocument | None:
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_CLASS, name))
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
