"""Document rooms served by several hubs at once: Yjs updates replicated over Redis Streams.

Every hub of a cluster that has members of a document keeps its own copy of
the room (a pycrdt ``Doc``) and replicates, in the manner of y-redis: Yjs
updates commute and applying one twice changes nothing, so no hub needs to
hold a room for the others. Keys, under the cluster's ``prefix``:

- ``{prefix}:wake:{run id}``: a hub's wake stream (one entry kept, expiring a
  minute after the last): written when the hub opens a room, so that its
  blocking XREAD, sent before the room's stream was among those it reads,
  returns at once and is sent again with it. Without it a room opened on a
  hub that has other documents open got its first remote updates only when
  that XREAD timed out (up to :data:`BLOCK_SECONDS`): the tail of the
  cross-hub latency in ``bench/documents_cluster.py``.
- ``{prefix}:doc:{room}``: a Redis Stream per document. An entry is
  ``o`` (the writing hub's run id, :attr:`roomhub.cluster.Cluster.run`) and
  one of ``u`` (a Yjs v1 update its clients made, merged per event-loop turn),
  ``q`` (a Yjs state vector: "send me what I lack", see below) or ``s`` (a
  Yjs update answering a ``q``). XADD with
  ``MAXLEN ~ stream_length`` bounds it.

What a hub does:

- publishes what its own clients (and Python code) changed, once, after
  applying it; never what it read from the stream (only an answer to a
  state request, below, carries other hubs' updates, and only those the
  asking hub lacks), so an update crosses Redis once and never comes back to
  its sender (no echo, no amplification). Entries tagged with its own run id are skipped on reading;
- reads every open document's stream with one ``XREAD BLOCK`` loop (one
  connection per hub, not per room), applies other hubs' updates unobserved
  and sends them to its local members;
- on opening a room, after loading the store, replays the retained stream
  from its start (idempotent: an update already loaded changes nothing; a
  replay is preferred to a gap) and publishes a ``q`` entry with its state
  vector; every other hub with the room open answers with what it has beyond
  that state (an ``s`` entry), so the new copy is whole even if an update's
  hub died before its store commit and the stream was trimmed since;
- after losing Redis (a dropped connection, a restart that lost the
  streams), resumes reading from the last id it read, and, since entries
  may have been lost with the server (or dropped from its queue, see
  :data:`MAX_QUEUED`), publishes for every open room a ``q`` entry marked
  ``r`` (resync): the other hubs answer it and send their own ``q`` (unmarked),
  which it answers in turn, so what either side lacks crosses once and every
  copy converges, also when this hub alone was cut off;
- durability is the store's: the hub whose client made an update appends it
  to the (shared PostgreSQL) store, and a hub closing a room appends the
  state of its copy before compacting, so what a killed hub had not
  committed yet is stored by the hubs that replicated it.

Awareness (cursors, presence) is ephemeral: a hub with a document open
subscribes to its pub/sub channel ``{prefix}:awareness:{room}`` and publishes
its members' awareness frames there (its run id, ``|``, the frame), as
received; what a hub misses while Redis is away is not resent (y-websocket
clients renew their state every 15 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

log = logging.getLogger("roomhub.documents.replication")

BLOCK_SECONDS = 0.25
"""Longest an XREAD waits. A room opened meanwhile wakes it (an entry in the hub's wake stream,
which every XREAD reads too), so that the room's updates do not wait for it to time out."""
WAKE_TTL_MS = 60_000  # a dead hub's wake stream is gone this long after its last wake-up
RETRY_SECONDS = 0.2  # between attempts while Redis does not answer
READ_COUNT = 512  # entries per stream and XREAD
MAX_QUEUED = 10_000
"""Entries kept for Redis while it does not answer; beyond, the queue is dropped and the resync
that follows Redis's return (state vectors exchanged) brings the other hubs what it held."""


class Replica(Protocol):
    """What replication needs of a document room (:class:`roomhub.documents.room.DocumentRoom`)."""

    name: str

    def apply_remote(self, update: bytes) -> None:
        """Apply another hub's Yjs update and send it to the local members (store nothing)."""
        ...

    def apply_remote_awareness(self, frame: bytes) -> None:
        """Apply another hub's awareness frame and send it to the local members."""
        ...

    def state_vector(self) -> bytes:
        """The copy's Yjs state vector."""
        ...

    def missing(self, state_vector: bytes) -> bytes | None:
        """What the copy has beyond ``state_vector``, as one Yjs update; None if nothing."""
        ...


class Replication:
    """One hub's side of document replication over the Redis at ``url`` (see the module).

    ``origin`` tags what this hub writes (its run id: a restarted hub reads what it wrote before
    it died as another hub's). ``stream_length``: entries a stream keeps (approximately). Updates
    are published by a writer task in pipelined batches, in order; while Redis does not answer
    they wait (and a ``q`` resync follows once it does).
    """

    def __init__(self, url: str, prefix: str, origin: str, stream_length: int = 1000) -> None:
        import redis.asyncio as redis

        self.prefix = prefix
        self.origin = origin.encode()
        self.stream_length = stream_length
        # A connection each for the blocking read, the publishes and the awareness subscription:
        # neither wait may hold back the others.
        self.reader = redis.Redis.from_url(url, socket_timeout=BLOCK_SECONDS + 5, socket_connect_timeout=2)
        self.writer = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self.rooms: dict[bytes, Replica] = {}  # stream key and awareness channel -> room
        self.positions: dict[bytes, bytes] = {}  # stream key -> last id read
        self.wake_key = f"{prefix}:wake:{origin}".encode()
        self._woken = b"0-0"  # the last wake-up read
        self.subscriber = redis.Redis.from_url(url, socket_connect_timeout=2)
        self.pubsub = self.subscriber.pubsub(ignore_subscribe_messages=True)
        self._subscribed = asyncio.Event()
        # (stream key, entry fields) for XADD, or (channel, bytes) for PUBLISH: one order for both
        self._outbox: list[tuple[bytes, dict[str, bytes] | bytes]] = []
        self._outbox_ready = asyncio.Event()
        self._outbox_empty = asyncio.Event()
        self._drops = 0  # times the queue was dropped (a batch in flight then is not in it any more)
        self._rooms_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._cut_off = False  # Redis failed since the last successful read: resync when it answers
        self.published = 0  # entries written
        self.applied = 0  # other hubs' updates applied

    def key(self, room: str) -> bytes:
        return f"{self.prefix}:doc:{room}".encode()

    def channel(self, room: str) -> bytes:
        return f"{self.prefix}:awareness:{room}".encode()

    # -- life -------------------------------------------------------------------
    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._read_loop(), name="documents-replication-read"),
            asyncio.create_task(self._write_loop(), name="documents-replication-write"),
            asyncio.create_task(self._awareness_loop(), name="documents-replication-awareness"),
        ]

    async def stop(self) -> None:
        """Publish what is queued (bounded: 5 s), then close the connections."""
        if self._outbox:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox_empty.wait(), 5)
        tasks = list(self._tasks)  # an unsubscription's task leaves the list when done
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.pubsub.aclose()
        await self.subscriber.aclose()
        await self.reader.aclose()
        await self.writer.aclose()

    # -- rooms --------------------------------------------------------------------
    async def open(self, room: Replica) -> None:
        """Replicate ``room`` (just loaded from the store): replay its retained stream, ask the
        other hubs for what it lacks, and read its stream from then on. A Redis that does not
        answer leaves the replay to the resync that follows its return."""
        import redis

        key = self.key(room.name)
        self.rooms[key] = room
        self.rooms[self.channel(room.name)] = room
        position = b"0-0"
        try:
            await self.pubsub.subscribe(self.channel(room.name))
            self._subscribed.set()
            while True:
                answer = await self.writer.xread({key: position}, count=READ_COUNT)
                entries = answer[0][1] if answer else []
                if entries:
                    # Other hubs' old state requests are not answered: they were, when they came.
                    position = self._apply(room, key, entries, answer_requests=False)
                if len(entries) < READ_COUNT:
                    break
        except redis.RedisError as exc:
            log.warning("%s: stream not replayed at opening (%s); resyncing when Redis answers",
                        room.name, exc)
            self._cut_off = True
        if self.rooms.get(key) is room:
            self.positions[key] = position
            self._send(key, {"q": room.state_vector()})
            self._queue(self.wake_key, {"w": b""})  # the XREAD in flight does not read this room
            self._rooms_ready.set()

    def close(self, room: Replica) -> None:
        """Stop replicating ``room`` (torn down)."""
        key, channel = self.key(room.name), self.channel(room.name)
        if self.rooms.get(key) is room:
            del self.rooms[key]
            self.positions.pop(key, None)
            del self.rooms[channel]
            task = asyncio.ensure_future(self._unsubscribe(channel))
            self._tasks.append(task)
            task.add_done_callback(self._tasks.remove)

    async def _unsubscribe(self, channel: bytes) -> None:
        import redis

        with contextlib.suppress(redis.RedisError):
            if channel not in self.rooms:  # not opened again meanwhile
                await self.pubsub.unsubscribe(channel)

    def publish(self, room: Replica, update: bytes) -> None:
        """Queue ``update`` (Yjs v1, made by this hub's members) for the other hubs; never blocks."""
        key = self.key(room.name)
        if self.rooms.get(key) is room:
            self._send(key, {"u": update})

    def publish_awareness(self, room: Replica, frame: bytes) -> None:
        """Queue an awareness ``frame`` (y-protocols, from this hub's members) for the other hubs."""
        channel = self.channel(room.name)
        if self.rooms.get(channel) is room:
            self._queue(channel, self.origin + b"|" + frame)

    def _send(self, key: bytes, fields: dict[str, bytes]) -> None:
        self._queue(key, {"o": self.origin, **fields})

    def _queue(self, key: bytes, item: dict[str, bytes] | bytes) -> None:
        if len(self._outbox) >= MAX_QUEUED:
            log.warning("replication: %d entries queued for a Redis that does not answer: dropped, "
                        "a resync follows its return", len(self._outbox))
            self._outbox.clear()
            self._drops += 1
            self._cut_off = True
        self._outbox.append((key, item))
        self._outbox_ready.set()
        self._outbox_empty.clear()

    # -- the loops ------------------------------------------------------------------
    async def _write_loop(self) -> None:
        import redis

        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            while self._outbox:
                batch, drops = self._outbox[:READ_COUNT], self._drops
                try:
                    async with self.writer.pipeline(transaction=False) as pipe:
                        for key, fields in batch:
                            if isinstance(fields, bytes):
                                pipe.publish(key, fields)
                            elif key == self.wake_key:
                                pipe.xadd(key, fields, maxlen=1, approximate=False)  # type: ignore[arg-type]
                                pipe.pexpire(key, WAKE_TTL_MS)
                            else:
                                pipe.xadd(key, fields, maxlen=self.stream_length,  # type: ignore[arg-type]
                                          approximate=True)
                        await pipe.execute()
                except redis.RedisError as exc:
                    # Kept, in order, and sent again (an entry written twice changes nothing).
                    if not self._cut_off:
                        log.warning("replication: Redis unreachable (%s); %d updates wait",
                                    exc, len(self._outbox))
                    self._cut_off = True
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                if drops == self._drops:
                    del self._outbox[:len(batch)]
                self.published += len(batch)
            self._outbox_empty.set()

    async def _read_loop(self) -> None:
        import redis

        while True:
            if not self.positions:
                self._rooms_ready.clear()
                await self._rooms_ready.wait()
                continue
            try:
                answer = await self.reader.xread(
                    {**self.positions, self.wake_key: self._woken}, count=READ_COUNT,
                    block=round(BLOCK_SECONDS * 1000),
                )
            except redis.RedisError as exc:
                if not self._cut_off:
                    log.warning("replication: Redis unreachable (%s); resuming from the last ids read", exc)
                self._cut_off = True
                await asyncio.sleep(RETRY_SECONDS)
                continue
            if self._cut_off:
                self._resync()
            if answer:
                for key, entries in answer:
                    if key == self.wake_key:
                        self._woken = entries[-1][0]  # woken: sent again with every open room
                self._deliver(answer)

    async def _awareness_loop(self) -> None:
        import redis

        await self._subscribed.wait()  # get_message needs a subscription first
        while True:
            try:
                # redis-py reconnects and subscribes again to every channel after a drop
                message = await self.pubsub.get_message(timeout=BLOCK_SECONDS)
            except redis.RedisError:
                await asyncio.sleep(RETRY_SECONDS)
                continue
            if message is None or message.get("type") != "message":
                continue
            origin, _, frame = message["data"].partition(b"|")
            room = self.rooms.get(message["channel"])
            if origin == self.origin or room is None:
                continue
            try:
                room.apply_remote_awareness(frame)
            except Exception:
                log.exception("%s: awareness frame from another hub not applied", room.name)

    def _resync(self) -> None:
        """Redis answers again: ask the other hubs for whatever every open room lacks (entries may
        have been lost with the server; the answers to theirs carry what this hub has)."""
        self._cut_off = False
        log.info("replication: Redis reachable again; resyncing %d document(s)", len(self.positions))
        for key, room in list(self.rooms.items()):
            if key in self.positions:
                self._send(key, {"q": room.state_vector(), "r": b"1"})

    def _deliver(self, answer: Any) -> None:
        """Apply the entries of the read loop's XREAD answer."""
        for key, entries in answer:
            room = self.rooms.get(key)
            if room is not None and key in self.positions:  # not closed since the read was sent
                self.positions[key] = self._apply(room, key, entries, answer_requests=True)

    def _apply(self, room: Replica, key: bytes, entries: list[Any], answer_requests: bool) -> bytes:
        """Apply other hubs' entries of ``room``'s stream; the last id seen."""
        for _, fields in entries:
            if fields.get(b"o") == self.origin:
                continue
            try:
                update = fields.get(b"u") or fields.get(b"s")
                if update is not None:
                    self.applied += 1
                    room.apply_remote(update)
                    continue
                state = fields.get(b"q")
                if state is not None and answer_requests:
                    lacking = room.missing(state)
                    if lacking is not None:
                        self._send(key, {"s": lacking})
                    if b"r" in fields:  # a resync: it may hold what this copy lacks, too
                        self._send(key, {"q": room.state_vector()})
            except Exception:  # one bad entry (written by something else) must not stop the others
                log.exception("%s: stream entry not applied", room.name)
        return entries[-1][0]
