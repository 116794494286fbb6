"""A document room: one pycrdt ``Doc`` shared by its members, loaded from and saved to a store.

Life of a room (through :class:`roomhub.core.rooms.RoomRegistry`):

- creation loads every stored update into the document *before* the first
  member joins, so no client ever syncs against an empty document that has
  content on disk;
- a joining member gets sync step 1 and the current awareness states; it
  receives document updates once it sent its own sync step 1 and got the
  answer (sync step 2 is computed from the document at that instant, so no
  update can reach it before the state it builds on). When the sync step 1
  frame is not kept, it is made after the turn's write: a joiner whose own
  sync step 1 is answered in the turn it joined gets that answer first;
- the document's encoding is kept while nothing changes: the sync step 1
  frame every joiner gets and the sync step 2 message answering an empty state
  vector (a client with nothing) are made once per change batch, on the first
  join that needs them, and the same bytes go to every joiner: the sync step 2
  is kept framed as a WebSocket message
  (:class:`~roomhub.transport.callback_websocket.PreparedMessage`, the state copied once
  into it), so a join of a document of 870 KiB copies nothing and encodes nothing. A room loaded
  from a log of one row (a compacted document) whose structs all integrated
  answers with that row as it is: no encoding is needed, and a row the store
  knows a compaction wrote as a snapshot (:meth:`~.stores.DocumentStore.load_whole`)
  is not even decoded until the document is first used (:attr:`DocumentRoom.doc`):
  sync step 1 is made from the state vector read from the row;
- a client's update is applied at the end of its turn of the loop, with the
  other updates of that turn in one transaction, with the document's observer unsubscribed
  (once for the turn) and relayed as received: pycrdt encodes an observed transaction's update
  again, eagerly, at a cost that grows with the document (180 us per small
  insert into a text of 10,000 one-client inserts, against 48 us unobserved); a
  change made from Python is observed. Both are coalesced with the other
  changes of the same event-loop turn and sent once, merged, as the same
  bytes to every synced member (sender included, as the y-websocket server
  does);
- the store receives the updates the document applied, in that order, so
  that replaying them (:func:`~.stores.load_into`) rebuilds the very
  document joiners were synced from. Part of a client's update may not be
  integrated yet: a struct whose clock skips ahead of what the document has,
  or whose origin has not arrived, waits in the document until what it
  depends on comes, and pycrdt neither says which part waits nor encodes all
  of it in the document's state; and a Doc integrates such structs
  differently depending on the order updates come in. So while nothing
  waits (:func:`~.stores.integrate` tells), the updates of one turn are
  stored as one merged row, as they are sent; an update some of whose
  structs wait, and every update while one does, is stored alone, exactly
  as received. More than :data:`MAX_WAITING` waiting updates that members
  sent close the connection that sent the last one (1008); another hub's
  updates may wait too, for messages the resync brings (see
  :mod:`.replication`), and do not count;
- a member's awareness states are removed, and the removal broadcast, when
  its connection ends;
- while the room is open its document is attached to the store
  (:meth:`~.stores.DocumentStore.attach`): a compaction takes the document's
  own encoding (:meth:`DocumentRoom.snapshot`) instead of replaying the log,
  unless an update waits or a deletion names an item the document lacks
  (pycrdt keeps such a deletion aside and leaves it out of the encoding);
- teardown (after the registry's grace period) flushes the store and
  compacts the document's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pycrdt import Array, Doc, Map, Text, TransactionEvent, get_state, get_update

from ..core.bus import Bus
from ..core.rooms import Room
from ..jsonlimits import DEFAULT_MAX_DEPTH
from ..transport.callback_websocket import PreparedMessage
from ..transport.traffic import Frame
from . import protocol as p
from .stores import DocumentStore, integrate, load_into, merge
from .stores.base import deletes_beyond

if TYPE_CHECKING:
    from .replication import Replication

log = logging.getLogger("roomhub.documents.room")

NAMESPACE = "yjs"
REMOTE = object()
"""The sender of another hub's update in a room's incoming updates (see apply_remote)."""
MAX_WAITING = 64
"""Updates with structs waiting for missing ones a document keeps (each costs every update a check)."""


class Member(Protocol):
    """What a room needs of a member: a connection
    (:class:`~roomhub.transport.callback_websocket.CallbackWebSocket`) or a handle."""

    label: str

    def send(self, frame: Frame | PreparedMessage) -> bool: ...

    def close(self, code: int = 1000, reason: str = "") -> None: ...


@dataclass
class DocumentContext:
    """What document rooms share: the store and per-connection limits."""

    store: DocumentStore
    max_awareness_clients: int = 16
    max_json_depth: int = DEFAULT_MAX_DEPTH  # levels of an awareness state (server.limits)
    replication: Replication | None = None  # in a cluster: the other hubs' copies (see .replication)


def root_types_json(doc: Doc) -> dict[str, Any]:
    """A JSON view of ``doc``'s root types (Map -> object, Text -> string, Array -> list).

    A root's type is not recorded in Yjs updates, so each root is read from a
    copy of the document as a Map, then a Text, then an Array: the first
    non-empty reading wins.
    """
    update = doc.get_update()
    view: dict[str, Any] = {}
    for key in list(doc.keys()):
        value: Any = []
        for kind in (Map, Text, Array):
            copy = Doc()
            copy.apply_update(update)
            root = copy.get(key, type=kind)
            value = str(root) if kind is Text else root.to_py()
            if value:
                break
        view[key] = value
    return view


def _framed_step2(update: bytes) -> PreparedMessage:
    """``[0, 1, update]`` framed as a binary WebSocket message, ``update`` copied once."""
    return PreparedMessage.binary(p.sync_step2_header(len(update)), update)


class DocumentRoom(Room):
    """A Yjs document shared over the y-websocket protocol (see the module's description)."""

    def __init__(self, name: str, ctx: DocumentContext, bus: Bus) -> None:
        super().__init__(NAMESPACE, name, bus)
        self.ctx = ctx
        self._doc = Doc()
        self._cold: bytes | None = None  # a snapshot row not decoded yet (see doc)
        self._observing = False  # from creation to teardown: the observer is subscribed
        self._subscription: Any = None
        # Per-member state, none of it kept longer than needed (an idle synced member costs its
        # entry in ``members`` alone): members not answered sync step 2 yet (document updates
        # skip them), awareness client ids per member, members told they are read-only.
        self._unsynced: set[Any] = set()
        self._awareness_ids: dict[Any, set[int]] = {}
        self._told_read_only: set[Any] | None = None
        # The document's encoding while nothing changes (None: to be made on the next join).
        self._step1_frame: bytes | None = None
        self._step2: PreparedMessage | None = None  # the answer to an empty state vector, framed
        self._incoming: list[tuple[Any, bytes]] = []  # (member, update) received this turn
        self._pending: list[bytes] = []  # changes of this turn, to send
        self._local: list[bytes] = []  # changes of this turn made here, to replicate (in a cluster)
        self._stored: list[bytes] = []  # updates of this turn to store as one row (nothing waits)
        self._waiting: list[bytes] = []  # applied updates some of whose structs wait (stores.integrate)
        self._sent_waiting: set[int] = set()  # ids of those of them that members sent
        self._deletes: list[bytes] = []  # delete sets naming items the document lacks (idem)
        self._flush_scheduled = False
        self.awareness_states: dict[int, str] = {}  # client id -> JSON state
        self.awareness_clocks: dict[int, int] = {}
        self.updates_applied = 0

    @property
    def doc(self) -> Doc:
        """The room's :class:`pycrdt.Doc`. A room loaded from a snapshot row decodes it here,
        on the document's first use (an update, a client that has part of it, the Python API),
        not at its creation: a cold join of a document nobody changes decodes nothing."""
        if self._cold is not None:
            row, self._cold = self._cold, None
            self._doc.apply_update(row)  # unobserved: loading is not a change
            if self._observing:
                self._subscription = self._doc.observe(self._on_change)
        return self._doc

    # -- lifecycle ------------------------------------------------------------
    async def on_create(self) -> None:
        updates, whole = await self.ctx.store.load_whole(self.name)
        if whole:
            # A snapshot: nothing of it can wait, and joiners that have nothing get it as it is.
            # It is decoded on the document's first use (see doc); sync step 1 needs only its
            # state vector, read from the row (about a sixth of decoding it into a Doc).
            self._cold = updates[0]
        else:
            self._waiting = load_into(self._doc, updates, self._deletes)
        if len(updates) == 1 and not self._waiting:
            # One row (a compacted document) that integrated whole is the document's state:
            # joiners get it as it is, with no encoding of the document.
            self._step2 = _framed_step2(updates[0])
        self._observing = True
        if self._cold is None:
            self._subscription = self._doc.observe(self._on_change)
        self.ctx.store.attach(self.name, self.snapshot)
        if self.ctx.replication is not None:
            await self.ctx.replication.open(self)

    async def on_teardown(self) -> None:
        self._flush()
        self._observing = False
        if self._subscription is not None:
            self._doc.unobserve(self._subscription)
            self._subscription = None
        if self.ctx.replication is not None:
            self.ctx.replication.close(self)
            # Other hubs' updates are stored by the hub that received them, which may have died
            # before its commit: this copy's state makes sure the store has all it had.
            self.ctx.store.append(self.name, self.doc.get_update())
        await self.ctx.store.flush()
        try:
            await self.ctx.store.compact(self.name)
        except Exception:
            log.exception("%s: compaction at eviction failed (the log is kept as is)", self.name)
        finally:
            self.ctx.store.detach(self.name, self.snapshot)

    async def on_join(self, connection: Any) -> None:
        self._unsynced.add(connection)
        if self._step1_frame is not None:
            connection.send(self._step1_frame)
        else:
            # Making sync step 1 reads the document's state vector (0.4 ms for a document of
            # 870 KiB, from the row of a cold room). The joiner's own sync step 1 often came
            # while the room loaded and is answered in this very turn: its sync step 2 leaves
            # first, in the write that ends the turn (queued by the transport with call_soon
            # when the answer is sent, hence two hops here), and ours follows.
            loop = asyncio.get_running_loop()
            loop.call_soon(loop.call_soon, self._send_step1, connection)
        if self.awareness_states:
            connection.send(self._awareness_frame(list(self.awareness_states)))

    def _send_step1(self, connection: Any) -> None:
        """Send sync step 1 (the document's state vector, kept until the document changes) to
        ``connection`` if it is still a member."""
        if connection not in self.members:
            return
        frame = self._step1_frame
        if frame is None:
            # A cold room's state vector is read from its row (about a sixth of decoding it).
            state = get_state(self._cold) if self._cold is not None else self.doc.get_state()
            frame = self._step1_frame = p.sync_step1(state)
        connection.send(frame)

    def forget(self, member: Any) -> None:
        """``member`` left: drop its awareness states and tell the others."""
        self._unsynced.discard(member)
        if self._told_read_only is not None:
            self._told_read_only.discard(member)
        ids = self._awareness_ids.pop(member, None)
        if not ids:
            return
        removed = []
        for client_id in ids:
            if self.awareness_states.pop(client_id, None) is not None:
                clock = self.awareness_clocks.get(client_id, 0) + 1
                self.awareness_clocks[client_id] = clock
                removed.append((client_id, clock, "null"))
        if removed:
            frame = p.encode_awareness(removed)
            self.broadcast(frame)
            if self.ctx.replication is not None:
                self.ctx.replication.publish_awareness(self, frame)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(
            size=self.size(),
            awareness=len(self.awareness_states),
            updates_applied=self.updates_applied,
        )
        return info

    # -- frames from members ----------------------------------------------------
    def handle(self, member: Any, frame: bytes, writable: bool = True) -> None:
        """Apply one frame from ``member``. Raises :class:`protocol.ProtocolError` on a frame
        that does not decode.

        A document update is applied at the end of the turn, with the others of the turn
        (:meth:`_apply_incoming`, which closes ``member`` if it does not decode: pycrdt refuses
        it before any struct is integrated, so it changes nothing). A member that is not
        ``writable`` (read-only access) has its updates dropped and is told so once with a
        y-protocols permission-denied message.
        """
        message = p.decode(frame, self.ctx.max_json_depth)
        if isinstance(message, p.SyncUpdate | p.SyncStep2):
            update = message.update
            if update == p.EMPTY_UPDATE:
                return
            if not writable:
                told = self._told_read_only
                if told is None:
                    told = self._told_read_only = set()
                if member not in told:
                    told.add(member)
                    member.send(p.permission_denied(f"read-only access to document {self.name!r}"))
                log.debug("%s: dropped an update from read-only %s", self.name, member.label)
                return
            # Applied with the other updates of this turn, in one transaction (see _apply_incoming).
            self._incoming.append((member, update))
            self._schedule_flush()
        elif isinstance(message, p.SyncStep1):
            self._flush()  # members already synced get what is pending before this one does
            member.send(self._sync_step2(message.state_vector))
            self._unsynced.discard(member)
        elif isinstance(message, p.AwarenessUpdate):
            self._apply_awareness(member, message)
        elif isinstance(message, p.QueryAwareness):
            if self.awareness_states:
                member.send(self._awareness_frame(list(self.awareness_states)))
        # Auth messages from clients carry nothing for us (as in y-websocket's server).

    def _apply_incoming(self) -> None:
        """Apply the updates members (and other hubs) sent this turn, in the order they came,
        in one transaction with the observer unsubscribed once (about 7 us per update applied
        alone, 3 us four to a transaction). A member whose update does not decode, or leaves
        too many updates waiting, is closed (1007, 1008); the others' updates are applied all
        the same. Another hub's update (:data:`REMOTE`) is sent, not stored or replicated."""
        incoming, self._incoming = self._incoming, []
        # In a cluster only what is new here crosses Redis: a client that sends back what it
        # received (pycrdt's Provider does) must not echo another hub's update to every hub.
        # What it received came in an earlier turn, so the state before this batch tells.
        before = self.doc.get_state() if self.ctx.replication is not None else None
        with self._unobserved() as doc, doc.transaction():
            for member, update in incoming:
                try:
                    if member is REMOTE:
                        self._integrate(update, by_member=False)
                        self._pending.append(update)
                    else:
                        self._apply_update(update, before)
                except p.ProtocolError as exc:
                    if member is REMOTE:
                        log.warning("%s: an update of another hub not applied: %s", self.name, exc.reason)
                        continue
                    log.info("%s: bad update from %s, closing (%d): %s",
                             self.name, getattr(member, "label", member), exc.code, exc.reason)
                    if member is not None:
                        member.close(exc.code, exc.reason)
        self._step1_frame = self._step2 = None  # the kept encoding is out of date

    def _apply_update(self, update: bytes, before: bytes | None) -> None:
        """Apply a member's ``update`` (the observer unsubscribed), queue it to be sent and
        stored, and, in a cluster, what it holds beyond ``before`` (the state vector before
        this turn's batch) to be replicated. Raises :class:`protocol.ProtocolError` if it does
        not decode (nothing changed) or leaves more than :data:`MAX_WAITING` updates waiting."""
        waited = bool(self._waiting)
        self._integrate(update, by_member=True)
        self.updates_applied += 1
        self._pending.append(update)
        if before is not None:
            fresh = get_update(update, before)
            if fresh != p.EMPTY_UPDATE:
                self._local.append(fresh)
        if waited or self._waiting:
            self._store_alone(update)
            if len(self._sent_waiting) > MAX_WAITING:
                raise p.ProtocolError(
                    f"more than {MAX_WAITING} updates wait for updates that never came", code=1008
                )
        else:
            self._stored.append(update)

    @contextlib.contextmanager
    def _unobserved(self) -> Iterator[Doc]:
        """The document with its observer unsubscribed meanwhile: updates that came from
        elsewhere are relayed as received, not encoded again (see the module)."""
        doc, subscription = self.doc, self._subscription
        if subscription is not None:
            doc.unobserve(subscription)
        try:
            yield doc
        finally:
            if subscription is not None:
                self._subscription = doc.observe(self._on_change)

    def _integrate(self, update: bytes, by_member: bool) -> None:
        """Integrate ``update`` (what waits kept aside, see :func:`.stores.integrate`), sent by
        a member or not (another hub's); raises :class:`protocol.ProtocolError` if it does not
        decode (then nothing changed)."""
        try:
            self._waiting = integrate(self.doc, update, self._waiting, self._deletes)
        except ValueError as exc:
            raise p.ProtocolError(f"update does not decode: {exc}") from None
        # Only the members' waiting updates count against MAX_WAITING: another hub's wait for
        # messages Redis lost, which the resync brings (see .replication), not for a client.
        if self._sent_waiting or (by_member and self._waiting):
            held = {id(u) for u in self._waiting}  # integrate keeps the very objects
            self._sent_waiting &= held
            if by_member and id(update) in held:
                self._sent_waiting.add(id(update))

    def _sync_step2(self, state_vector: bytes) -> bytes | PreparedMessage:
        """The sync step 2 message answering ``state_vector``: the kept one, framed, when the
        client has nothing (an empty state vector), else what the document has beyond it."""
        if state_vector == p.EMPTY_STATE_VECTOR:
            return self._state_message()
        try:
            return p.sync_step2(self.doc.get_update(state_vector))
        except ValueError as exc:
            raise p.ProtocolError(f"state vector does not decode: {exc}") from None

    def snapshot(self) -> bytes | None:
        """The document's state as one Yjs update, standing for every update it applied (the
        store compacts into it, see :mod:`.stores.group_commit`); None while some of them
        wait or delete an item the document lacks: its encoding would leave that out."""
        if self._waiting:
            return None
        if self._deletes:
            state = self.doc.get_state()
            self._deletes = [rest for rest in self._deletes if deletes_beyond(rest, state)]
            if self._deletes:
                return None
        if self._step2 is not None:  # kept for joins: no encoding at all
            message = self._step2.payload
            return bytes(message[p.sync_header_size(message):])
        return self.doc.get_update()

    def size(self) -> int:
        """The document's encoded size in bytes (its state as one update)."""
        message = self._state_message().payload
        return len(message) - p.sync_header_size(message)

    def _state_message(self) -> PreparedMessage:
        """The sync step 2 message of the document's whole state, kept until it changes."""
        prepared = self._step2
        if prepared is None:
            prepared = self._step2 = _framed_step2(self.doc.get_update())
        return prepared

    def _apply_awareness(self, member: Any, message: p.AwarenessUpdate) -> None:
        """Apply an awareness update from ``member`` (None: from another hub of the cluster,
        whose own limits its members' ids were counted against) and relay it."""
        states, clocks = self.awareness_states, self.awareness_clocks
        for entry in message.entries:
            cid = entry.client_id
            current = clocks.get(cid)
            if current is None or entry.clock > current or (
                entry.clock == current and entry.removed and cid in states
            ):
                clocks[cid] = entry.clock
                ids = self._awareness_ids.get(member)
                if entry.removed:
                    states.pop(cid, None)
                    if ids is not None:
                        ids.discard(cid)
                elif member is None:
                    states[cid] = entry.state
                else:
                    if ids is None:
                        ids = self._awareness_ids[member] = set()
                    if cid not in ids:
                        if len(ids) >= self.ctx.max_awareness_clients:
                            raise p.ProtocolError(
                                f"more than {self.ctx.max_awareness_clients} awareness client ids "
                                "on one connection", code=1008,
                            )
                        ids.add(cid)
                    states[cid] = entry.state
        # Relayed as received to every member, sender included: clients ignore stale
        # entries, and the echo is what keeps a y-websocket client's timeout at bay.
        self.broadcast(message.frame)
        if member is not None and self.ctx.replication is not None:
            self.ctx.replication.publish_awareness(self, message.frame)

    def _awareness_frame(self, client_ids: list[int]) -> bytes:
        clocks, states = self.awareness_clocks, self.awareness_states
        return p.encode_awareness([(cid, clocks.get(cid, 0), states[cid]) for cid in client_ids])

    # -- changes of the document --------------------------------------------------
    def _on_change(self, event: TransactionEvent) -> None:
        update = event.update
        if update == p.EMPTY_UPDATE:
            return
        # A change made from Python (a client's update is applied unobserved, see handle).
        self._step1_frame = self._step2 = None  # the kept encoding is out of date
        if self._waiting:
            self._store_alone(update)
        else:
            self._stored.append(update)
        self._pending.append(update)
        if self.ctx.replication is not None:
            self._local.append(update)
        self._schedule_flush()

    def _store_alone(self, update: bytes) -> None:
        """Append ``update`` to the store as its own row, after the rows of this turn so far."""
        if self._stored:
            self.ctx.store.append_mergeable(self.name, merge(self._stored))
            self._stored = []
        self.ctx.store.append(self.name, update)

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Send the changes of this turn as one update; store the updates of this turn that
        wait for nothing as one row."""
        self._flush_scheduled = False
        if self._incoming:
            self._apply_incoming()
        pending, self._pending = self._pending, []
        if not pending:  # what is stored or published was sent too
            return
        sent = stored_update = merge(pending)
        stored, self._stored = self._stored, []
        if stored:
            # Usually the same updates (nothing was stored alone this turn): merged once.
            if stored != pending:
                stored_update = merge(stored)
            self.ctx.store.append_mergeable(self.name, stored_update)
        if self._local:
            local, self._local = self._local, []
            assert self.ctx.replication is not None
            # Usually what was sent, or else stored: another hub's updates of the turn are sent,
            # not stored; a member's echo of what the room had is stored, not published.
            if local == pending:
                published = sent
            elif local == stored:
                published = stored_update
            else:
                published = merge(local)
            self.ctx.replication.publish(self, published)
        self.broadcast(p.sync_update(sent))

    # -- replication (a cluster's other hubs, see .replication) ---------------------
    def apply_remote(self, update: bytes) -> None:
        """Apply another hub's ``update`` at the end of this turn, with the members' updates of
        the turn (one transaction), and send it to the members with this turn's changes. Not
        stored (the hub that received it stores it) and not replicated again; one that does not
        decode is logged and dropped."""
        if update == p.EMPTY_UPDATE:
            return
        self._incoming.append((REMOTE, update))
        self._schedule_flush()

    def apply_remote_awareness(self, frame: bytes) -> None:
        """Apply another hub's awareness ``frame`` and send it to the members. Raises
        :class:`protocol.ProtocolError` if it is not an awareness frame that decodes."""
        message = p.decode(frame, self.ctx.max_json_depth)
        if not isinstance(message, p.AwarenessUpdate):
            raise p.ProtocolError("not an awareness update")
        self._apply_awareness(None, message)

    def state_vector(self) -> bytes:
        """The document's Yjs state vector (with this turn's updates applied first)."""
        if self._incoming:
            self._flush()
        return self.doc.get_state()

    def missing(self, state_vector: bytes) -> bytes | None:
        """What the document has beyond ``state_vector`` (one Yjs update; this turn's updates
        applied first: another hub may have missed them too); None if nothing."""
        if self._incoming:
            self._flush()
        update = self.doc.get_update(state_vector)
        return None if update == p.EMPTY_UPDATE else update

    def _deliver(self, frame: Frame) -> None:
        # The same bytes to every member; document updates skip members not synced yet (only
        # while someone joins, or Python code holds the room).
        members = tuple(self.members)
        unsynced = self._unsynced
        if unsynced and frame[0] == p.MSG_SYNC:
            members = tuple(m for m in members if m not in unsynced)
        for member in members:
            member.send(frame)

    # -- server-side Python API ---------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """A JSON view of the document's root types (see :func:`root_types_json`)."""
        return root_types_json(self.doc)

    def awareness_json(self) -> dict[int, Any]:
        """The current awareness states, decoded: client id -> state."""
        return {cid: json.loads(state) for cid, state in self.awareness_states.items()}
