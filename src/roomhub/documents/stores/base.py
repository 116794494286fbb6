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
from collections.abc import Callable
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


SnapshotSource = Callable[[], "bytes | None"]
"""What a live room gives its store (:meth:`DocumentStore.attach`): called on the event loop, it
returns the room's document encoded as one update, which holds every update the room appended
to the store so far, or None when it cannot stand for them (see :meth:`DocumentRoom.snapshot`)."""


def _var_uint(data: bytes, pos: int) -> tuple[int, int]:
    """The lib0 variable-length unsigned integer at ``data[pos:]`` and the position after it."""
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def state_clocks(state: bytes) -> dict[int, int]:
    """A Yjs v1 state vector decoded: client id -> the clock the document has up to (excluded)."""
    count, pos = _var_uint(state, 0)
    clocks: dict[int, int] = {}
    for _ in range(count):
        client, pos = _var_uint(state, pos)
        clocks[client], pos = _var_uint(state, pos)
    return clocks


def deletes_beyond(rest: bytes, state: bytes) -> bool:
    """True if the delete set of ``rest`` names an item beyond ``state`` (a state vector).

    ``rest`` is what :func:`pycrdt.get_update` keeps of an update beyond ``state``; with no struct
    left (its first byte 0) it is the update's delete set. A deletion of an item the document
    does not have waits in the document (pycrdt keeps it aside and applies it when the item
    comes) and is left out of the document's encoding, so a document with one cannot be stored
    as its own state alone. Raises ``IndexError`` on a truncated delete set.
    """
    clocks: dict[int, int] | None = None
    count, pos = _var_uint(rest, 1)
    for _ in range(count):
        client, pos = _var_uint(rest, pos)
        ranges, pos = _var_uint(rest, pos)
        for _ in range(ranges):
            clock, pos = _var_uint(rest, pos)
            length, pos = _var_uint(rest, pos)
            if clocks is None:
                clocks = state_clocks(state)
            if clock + length > clocks.get(client, 0):
                return True
    return False


def integrate(
    doc: Doc, update: bytes, waiting: list[bytes], deletes: list[bytes] | None = None
) -> list[bytes]:
    """Apply ``update`` to ``doc``; return which of ``waiting`` and ``update`` still wait.

    ``waiting`` holds the updates applied before some of whose structs were not
    integrated; the result is those, and ``update``, with a struct beyond the
    document's state after this one (a state vector read and one
    :func:`pycrdt.get_update` per update: about 3 us when nothing waits).
    ``deletes``, if given, receives the delete set of each of them that names an item the
    document does not have (:func:`deletes_beyond`; decoded only for an update that deletes).
    Raises ``ValueError`` for an update that does not decode.
    """
    doc.apply_update(update)
    state = doc.get_state()
    still: list[bytes] = []
    for u in (*waiting, update) if waiting else (update,):
        # pycrdt's get_update(u, state) keeps the structs beyond the state; its first byte is
        # their number of clients (0: none) and the delete set follows.
        rest = get_update(u, state)
        if rest[:1] != b"\x00":
            still.append(u)
        elif deletes is not None and rest != EMPTY_UPDATE and deletes_beyond(rest, state):
            deletes.append(rest)
    return still


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


def load_into(doc: Doc, updates: list[bytes], deletes: list[bytes] | None = None) -> list[bytes]:
    """Apply stored updates to ``doc`` one by one, in order: the document the log was written from.

    Never their merge applied at once: besides being slower than a squashed log, a Doc fed
    updates some of whose structs wait (see :func:`squash`) integrates them differently.
    Returns the updates that still wait (see :func:`integrate`, which fills ``deletes``).
    """
    waiting: list[bytes] = []
    for update in updates:
        waiting = integrate(doc, update, waiting, deletes)
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

    def attach(self, name: str, source: SnapshotSource) -> None:
        """Tell the store that document ``name`` is live here and ``source`` gives its state (see
        :data:`SnapshotSource`), until :meth:`detach`: a store may then compact ``name`` into that
        state instead of replaying its log. This one ignores it."""
        return None

    def detach(self, name: str, source: SnapshotSource) -> None:
        """Undo :meth:`attach` of ``source`` (a later room's source for ``name`` stays)."""
        return None

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
