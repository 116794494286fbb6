"""A store kept in memory: for tests and ephemeral rooms (lost when the hub stops)."""

from __future__ import annotations

from .base import DocumentStore, StoredDocument, squash


class MemoryStore(DocumentStore):
    """Every document's updates in a list; ``compact_after`` updates more than the last
    compaction left trigger a compaction."""

    name = "memory"

    def __init__(self, compact_after: int = 500) -> None:
        self.compact_after = compact_after
        self._docs: dict[str, list[bytes]] = {}
        self._compacted_rows: dict[str, int] = {}

    async def load(self, name: str) -> list[bytes]:
        return list(self._docs.get(name, ()))

    def append(self, name: str, update: bytes) -> None:
        log = self._docs.setdefault(name, [])
        log.append(update)
        if len(log) - self._compacted_rows.get(name, 0) >= self.compact_after:
            self._squash(name, log)

    def _squash(self, name: str, log: list[bytes]) -> list[bytes]:
        rows = self._docs[name] = squash(log)
        self._compacted_rows[name] = len(rows)
        if self.metrics is not None:
            self.metrics.compactions.inc()
        return rows

    async def flush(self) -> None:
        return None

    async def compact(self, name: str) -> StoredDocument | None:
        log = self._docs.get(name)
        if log is None:
            return None
        rows = self._squash(name, log)
        return StoredDocument(name, len(rows), sum(map(len, rows)))

    async def delete(self, name: str) -> bool:
        self._compacted_rows.pop(name, None)
        return self._docs.pop(name, None) is not None

    async def documents(self) -> list[StoredDocument]:
        return [StoredDocument(n, len(u), sum(map(len, u))) for n, u in self._docs.items()]
