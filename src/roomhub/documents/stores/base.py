"""The store interface: an append-only log of Yjs updates per document, with compaction.

A store keeps, for each document name, an ordered list of Yjs v1 updates:
the ones its room applied, in the order it applied them. Updates are meant
to commute, but a pycrdt ``Doc`` fed updates whose structs cannot be
integrated yet ends up in a state that depends on the order, so loading
replays the log in order; compaction replaces the log's prefix by a
snapshot only where that changes nothing (see :func:`squash`; never a
re-encoding through a fresh client, which would duplicate content).

The interface is small and asynchronous on purpose: an SQL database
(PostgreSQL: one table, a transaction per compaction) or Redis (a list per
document, a MULTI/EXEC or Lua script per compaction) can implement it.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pycrdt import Doc, get_update, merge_updates

from ..protocol import EMPTY_UPDATE

if TYPE_CHECKING:
    from ...core.metrics import HubMetrics


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


def _waits(update: bytes, state: bytes) -> bool:
    """True if some struct of ``update`` lies beyond ``state`` (a state vector): not integrated."""
    # pycrdt's get_update(update, state) keeps the structs beyond the state; its first byte is
    # their number of clients (0: none) and the delete set follows.
    return get_update(update, state)[:1] != b"\x00"


def integrate(doc: Doc, update: bytes, waiting: list[bytes]) -> list[bytes]:
    """Apply ``update`` to ``doc``; return which of ``waiting`` and ``update`` still wait.

    ``waiting`` holds the updates applied before some of whose structs were not
    integrated; the result is those, and ``update``, with a struct beyond the
    document's state after this one (a state vector read and one
    :func:`pycrdt.get_update` per update: about 3 us when nothing waits).
    Raises ``ValueError`` for an update that does not decode.
    """
    doc.apply_update(update)
    state = doc.get_state()
    if not waiting:
        return [update] if _waits(update, state) else waiting
    return [u for u in (*waiting, update) if _waits(u, state)]


def squash(updates: list[bytes]) -> list[bytes]:
    """Compact a document's log without changing what replaying it builds (see :func:`load_into`).

    The log is cut after the last update at which nothing waited (every
    struct of the updates so far integrated into the document). That prefix
    becomes a snapshot, the state of a ``Doc`` that applied it (same client
    ids and clocks: nothing is re-created, so nothing can be duplicated;
    adjacent items are squashed, so it loads fast), followed by the union of
    its delete sets when the snapshot's own delete set lacks some of it (a
    deletion of an item the document never had waits too, and a Doc's
    encoding leaves it out). The updates after the cut are kept as they are,
    in order: some of their structs wait for updates that have not come, and
    a Doc integrates such structs differently depending on when they are
    applied again, so only the same sequence rebuilds the same document.
    Returns ``updates`` itself when there is nothing to compact.
    """
    head, cut = squash_prefix(updates)
    if not head:
        return updates
    return [*head, *updates[cut:]]


def squash_prefix(updates: list[bytes]) -> tuple[list[bytes], int]:
    """The rows that replace ``updates[:cut]`` in :func:`squash`, and ``cut``: ``([], 0)`` when
    there is nothing to compact. For a store that rewrites the prefix in place and leaves the
    rows after it (and rows other writers add meanwhile) untouched."""
    doc = Doc()
    waiting: list[bytes] = []
    cut = 0
    for index, update in enumerate(updates):
        waiting = integrate(doc, update, waiting)
        if not waiting:
            cut = index + 1
    if cut < 2:
        return [], 0
    if cut < len(updates):
        doc = Doc()
        load_into(doc, updates[:cut])
    state = doc.get_state()
    snapshot = doc.get_update()
    deletions = merge_updates(*(get_update(u, state) for u in updates[:cut]))
    head = [snapshot]
    if deletions not in (EMPTY_UPDATE, get_update(snapshot, state)):
        head.append(deletions)
    return head, cut


def load_into(doc: Doc, updates: list[bytes]) -> list[bytes]:
    """Apply stored updates to ``doc`` one by one, in order: the document the log was written from.

    Never their merge applied at once: besides being slower than a squashed log, a Doc fed
    updates some of whose structs wait (see :func:`squash`) integrates them differently.
    Returns the updates that still wait (see :func:`integrate`).
    """
    waiting: list[bytes] = []
    for update in updates:
        waiting = integrate(doc, update, waiting)
    return waiting


class DocumentStore(abc.ABC):
    """Where document rooms load from and append to.

    ``append`` never waits: the update is durable once :meth:`flush` returns,
    or at the latest one commit window later (see each store). ``close``
    flushes everything.
    """

    name = "store"
    metrics: HubMetrics | None = None  # the hub's: commit latency, batch sizes, compactions

    async def ping(self) -> None:
        """Raise (``OSError``, ``sqlite3.Error``...) unless the store answers (readiness)."""
        return None

    async def open(self) -> None:
        """Prepare the store (create tables, files); called once at hub start."""
        return None

    async def close(self) -> None:
        """Flush every pending update and release the store."""
        return None

    @abc.abstractmethod
    async def load(self, name: str) -> list[bytes]:
        """Every update of ``name`` (appended ones included), oldest first; ``[]`` if none."""

    async def load_whole(self, name: str) -> tuple[list[bytes], bool]:
        """:meth:`load`, and whether the updates are known to integrate whole: one row that a
        compaction wrote as the state of a Doc in which nothing waited. A loading room then
        skips :func:`integrate`'s check, a second decoding of the whole document (this store
        knows nothing of the kind: False)."""
        return await self.load(name), False

    @abc.abstractmethod
    def append(self, name: str, update: bytes) -> None:
        """Queue ``update`` (Yjs v1) to be written to document ``name``; never blocks."""

    def append_mergeable(self, name: str, update: bytes) -> None:
        """Queue ``update`` like :meth:`append`, telling the store it may be merged with the
        updates appended before and after it this way: at each of them every struct the
        document had was integrated, so replaying their merge builds what replaying them one by
        one does. A store may write such a run as one row; this one writes it as appended."""
        self.append(name, update)

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
