"""The store interface: an append-only log of Yjs updates per document, with compaction.

A store keeps, for each document name, an ordered list of Yjs v1 updates.
Updates are commutative and idempotent, so loading applies them all in any
order; compaction replaces a prefix of the log by one update that merges it
(never a re-encoding through a fresh client, which would duplicate content).

The interface is small and asynchronous on purpose: an SQL database
(PostgreSQL: one table, a transaction per compaction) or Redis (a list per
document, a MULTI/EXEC or Lua script per compaction) can implement it.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from pycrdt import Doc, get_update, merge_updates


@dataclass(frozen=True, slots=True)
class StoredDocument:
    """What a store holds for one document: ``updates`` rows totalling ``bytes`` bytes."""

    name: str
    updates: int
    bytes: int


def merge(updates: list[bytes]) -> bytes:
    """Merge Yjs v1 updates into one (pycrdt's ``merge_updates``; keeps every struct as is)."""
    if len(updates) == 1:
        return updates[0]
    return merge_updates(*updates)


def squash(updates: list[bytes]) -> list[bytes]:
    """Compact a document's updates: ``[snapshot, *leftovers]``.

    The snapshot is the state of a ``Doc`` that applied every update (same
    client ids and clocks: nothing is re-created, so nothing can be
    duplicated; adjacent items are squashed, so it loads fast). An update
    whose structs the document could not integrate (it depends on one that
    never arrived) is not in a Doc's encoding: it is kept as a leftover, so
    nothing is lost either.
    """
    doc = Doc()
    for update in updates:
        doc.apply_update(update)
    state = doc.get_state()
    # get_update(u, state)[0] == 0: no struct of u lies beyond the document's state
    leftovers = [u for u in updates if get_update(u, state)[:1] != b"\x00"]
    return [doc.get_update(), *leftovers]


def load_into(doc: Doc, updates: list[bytes]) -> None:
    """Apply stored updates to ``doc`` one by one (faster than applying their unsquashed merge)."""
    for update in updates:
        doc.apply_update(update)


class DocumentStore(abc.ABC):
    """Where document rooms load from and append to.

    ``append`` never waits: the update is durable once :meth:`flush` returns,
    or at the latest one commit window later (see each store). ``close``
    flushes everything.
    """

    name = "store"

    async def open(self) -> None:
        """Prepare the store (create tables, files); called once at hub start."""
        return None

    async def close(self) -> None:
        """Flush every pending update and release the store."""
        return None

    @abc.abstractmethod
    async def load(self, name: str) -> list[bytes]:
        """Every update of ``name`` (appended ones included), oldest first; ``[]`` if none."""

    @abc.abstractmethod
    def append(self, name: str, update: bytes) -> None:
        """Queue ``update`` (Yjs v1) to be written to document ``name``; never blocks."""

    @abc.abstractmethod
    async def flush(self) -> None:
        """Return once every update appended so far is written durably."""

    @abc.abstractmethod
    async def compact(self, name: str) -> StoredDocument | None:
        """Replace the log of ``name`` by its :func:`squash`, atomically; None if unknown."""

    @abc.abstractmethod
    async def delete(self, name: str) -> bool:
        """Forget document ``name`` (pending updates included). Returns False if it was unknown."""

    @abc.abstractmethod
    async def documents(self) -> list[StoredDocument]:
        """Every stored document with its row count and size."""
