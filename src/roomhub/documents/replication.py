"""Document rooms served by several hubs at once: Yjs updates replicated over Redis.

Every hub of a cluster that has members of a document keeps its own copy of
the room (a pycrdt ``Doc``) and replicates, in the manner of y-redis: Yjs
updates commute and applying one twice changes nothing, so no hub needs to
hold a room for the others. Keys and channels, under the cluster's ``prefix``:

- ``{prefix}:live:{room}``: the document's pub/sub channel, what reaches the
  other hubs with the document open as it happens. A message is the writing
  hub's run id (:attr:`roomhub.cluster.Cluster.run`), ``|``, a kind and its
  payload: ``u`` a Yjs v1 update its clients made (merged per event-loop turn),
  ``q`` a Yjs state vector ("send me what I lack", see below; ``r`` the same,
  for a resync), ``s`` a Yjs update answering one, ``a`` an awareness frame as
  received (cursors, presence: ephemeral, as in y-websocket).
- ``{prefix}:doc:{room}``: a Redis Stream per document holding the ``u`` and
  ``s`` updates too (fields ``o``: the run id, and ``u`` or ``s``; ``XADD``
  with ``MAXLEN ~ stream_length``), read only by a hub opening the room: the
  updates of the last moments that the store may not hold yet.

Why pub/sub for the live path: a hub reading the streams sends a blocking
``XREAD`` of every open document's stream again after each answer, and at a
paced load (each update alone) that is one command, with every stream's
name and position, per update received, the larger part of the receiving
hub's CPU (about 300 us per update in ``bench/documents_cluster.py``). Pushed
messages cost a parse each. What pub/sub does not give (messages published
while a hub's subscription is down are not kept) the state vector exchange
below makes up.

What a hub does:

- publishes what its own clients (and Python code) changed, once, after
  applying it; never what it received from another hub (only an answer to a
  state request, below, carries other hubs' updates, and only those the
  asking hub lacks), so an update crosses Redis once per hub with the
  document open and never comes back to its sender (messages tagged with its
  own run id are skipped: no echo, no amplification). What waits when a
  pipeline leaves goes in it (``XADD`` and ``PUBLISH``, in order), from one
  writer task, each document's updates merged into one message
  (:func:`coalesced`);
- on opening a room, after loading the store: subscribes to its channel
  (and waits until Redis confirmed it, so that nothing published from then
  on is missed), replays the retained stream (idempotent: an update already
  loaded changes nothing), and publishes a ``q`` with its state vector; every
  other hub with the room open answers with what it has beyond that state
  (an ``s``), so the new copy is whole even if an update's hub died before
  its store commit and the stream was trimmed since;
- publishes an ``r`` for a room whenever messages may have been lost: when
  Redis confirms the room's subscription renewed on a new connection (after
  a dropped connection or a restart: redis-py subscribes again by itself,
  sometimes without an error reaching this module, so the confirmation is
  what tells), and for every open room once Redis takes its messages again
  after this hub lost some of its own (its queue dropped, see
  :data:`MAX_QUEUED`, or a replay at opening failed). The other hubs answer
  it and send their own ``q``, which it answers in turn, so what either side
  lacks crosses once and every copy converges, also when this hub alone was
  cut off;
- durability is the store's: the hub whose client made an update appends it
  to the (shared PostgreSQL) store, and a hub closing a room appends the
  state of its copy before compacting, so what a killed hub had not
  committed yet is stored by the hubs that replicated it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from .stores.base import merge

log = logging.getLogger("roomhub.documents.replication")

RETRY_SECONDS = 0.2  # between attempts while Redis does not answer
READ_COUNT = 512  # stream entries per XREAD (opening a room), messages per pipeline
MAX_QUEUED = 10_000
"""Messages kept for Redis while it does not answer; beyond, the queue is dropped and the resync
that follows Redis's return (state vectors exchanged) brings the other hubs what it held."""
STORED_KINDS = (b"u", b"s")
"""Message kinds also appended to the document's stream (updates; not state vectors, awareness)."""


Outgoing = tuple[bytes | None, bytes, bytes, bytes]
"""A message waiting for Redis: stream key (None: published only), channel, kind, payload."""


def coalesced(batch: list[Outgoing]) -> list[Outgoing]:
    """``batch`` with each channel's updates (``u``) merged into one message, where the first
    was: the turns that passed while the previous batch was in flight cost one publish and one
    stream entry per document, and the other hubs one message to receive and apply, not one
    per turn. Updates commute, so moving one ahead of another kind's message (a state request,
    an answer, awareness) of the same batch changes nothing."""
    first: dict[bytes, int] = {}  # channel -> index in the result of its first update
    parts: dict[int, list[bytes]] = {}
    result: list[Outgoing] = []
    for message in batch:
        channel, kind = message[1], message[2]
        if kind == b"u":
            at = first.get(channel)
            if at is not None:
                parts[at].append(message[3])
                continue
            first[channel] = len(result)
            parts[len(result)] = [message[3]]
        result.append(message)
    for at, updates in parts.items():
        if len(updates) > 1:
            stream, channel, kind, _ = result[at]
            result[at] = (stream, channel, kind, merge(updates))
    return result


class Replica(Protocol):
    """What replication needs of a document room (:class:`roomhub.documents.room.DocumentRoom`)."""

    name: str

    def apply_remote(self, update: bytes) -> None:
        """Apply another hub's Yjs update and send it to the local members (store nothing; at
        the end of this turn of the event loop, with the other updates of the turn)."""
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
    it died as another hub's). ``stream_length``: entries a stream keeps (approximately).
    Everything is published by a writer task in pipelined batches, in order; while Redis does
    not answer it waits (and a resync follows once it does).
    """

    def __init__(self, url: str, prefix: str, origin: str, stream_length: int = 1000) -> None:
        import redis.asyncio as redis

        self.prefix = prefix
        self.origin = origin.encode()
        self.stream_length = stream_length
        # A connection each for the publishes and the subscription: neither waits for the other.
        self.writer = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self.subscriber = redis.Redis.from_url(url, socket_connect_timeout=2)
        self.pubsub = self.subscriber.pubsub()
        self.rooms: dict[bytes, Replica] = {}  # channel -> room
        self._confirming: dict[bytes, asyncio.Future[None]] = {}  # channel -> its SUBSCRIBE's answer
        self._subscribed = asyncio.Event()  # get_message needs a subscription first
        # One (un)subscription at a time: redis-py's PubSub opens its connection on first use,
        # and concurrent first uses would each open one (all but one never read).
        self._subscribing = asyncio.Lock()
        self._outbox: list[Outgoing] = []  # in the order they go out
        self._outbox_ready = asyncio.Event()
        self._outbox_empty = asyncio.Event()
        self._drops = 0  # times the queue was dropped (a batch in flight then is not in it any more)
        self._tasks: list[asyncio.Task[None]] = []
        self._cut_off = False  # messages may be lost (queue dropped, replay failed): resync
        self._down = False  # the subscription's connection failed (warned) and is not back yet
        self._renewing = False  # subscriptions renewed after a drop (told), confirmations coming

    def key(self, room: str) -> bytes:
        """The stream of ``room``'s updates (read when a hub opens it)."""
        return f"{self.prefix}:doc:{room}".encode()

    def channel(self, room: str) -> bytes:
        """The pub/sub channel of ``room`` (updates, state requests and answers, awareness)."""
        return f"{self.prefix}:live:{room}".encode()

    # -- life -------------------------------------------------------------------
    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen_loop(), name="documents-replication-listen"),
            asyncio.create_task(self._write_loop(), name="documents-replication-write"),
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
        await self.writer.aclose()

    # -- rooms --------------------------------------------------------------------
    async def open(self, room: Replica) -> None:
        """Replicate ``room`` (just loaded from the store): subscribe to its channel, replay its
        retained stream, ask the other hubs for what it lacks. A Redis that does not answer
        leaves the replay to the resync that follows its return."""
        import redis

        key, channel = self.key(room.name), self.channel(room.name)
        self.rooms[channel] = room
        position = b"0-0"
        try:
            confirmed = self._confirming[channel] = asyncio.get_running_loop().create_future()
            async with self._subscribing:
                await self.pubsub.subscribe(channel)
            self._subscribed.set()
            await asyncio.wait_for(confirmed, 5)  # from here on nothing published is missed
            while True:
                answer = await self.writer.xread({key: position}, count=READ_COUNT)
                entries = answer[0][1] if answer else []
                for _, fields in entries:
                    update = fields.get(b"u") or fields.get(b"s")
                    if fields.get(b"o") != self.origin and update is not None:
                        room.apply_remote(update)
                if len(entries) < READ_COUNT:
                    break
                position = entries[-1][0]
        except (redis.RedisError, TimeoutError) as exc:
            log.warning("%s: stream not replayed at opening (%s); resyncing when Redis answers",
                        room.name, exc or "no answer")
            self._cut_off = True
        finally:
            self._confirming.pop(channel, None)
        if self.rooms.get(channel) is room:
            self._send(room.name, b"q", room.state_vector())

    def close(self, room: Replica) -> None:
        """Stop replicating ``room`` (torn down)."""
        channel = self.channel(room.name)
        if self.rooms.get(channel) is room:
            del self.rooms[channel]
            task = asyncio.ensure_future(self._unsubscribe(channel))
            self._tasks.append(task)
            task.add_done_callback(self._tasks.remove)

    async def _unsubscribe(self, channel: bytes) -> None:
        import redis

        with contextlib.suppress(redis.RedisError):
            async with self._subscribing:
                if channel not in self.rooms:  # not opened again meanwhile
                    await self.pubsub.unsubscribe(channel)

    def publish(self, room: Replica, update: bytes) -> None:
        """Queue ``update`` (Yjs v1, made by this hub's members) for the other hubs; never blocks."""
        if self.rooms.get(self.channel(room.name)) is room:
            self._send(room.name, b"u", update)

    def publish_awareness(self, room: Replica, frame: bytes) -> None:
        """Queue an awareness ``frame`` (y-protocols, from this hub's members) for the other hubs."""
        if self.rooms.get(self.channel(room.name)) is room:
            self._send(room.name, b"a", frame)

    def _send(self, name: str, kind: bytes, payload: bytes) -> None:
        """Queue a message of ``kind`` for room ``name``'s channel (updates to its stream too)."""
        if len(self._outbox) >= MAX_QUEUED:
            log.warning("replication: %d messages queued for a Redis that does not answer: dropped, "
                        "a resync follows its return", len(self._outbox))
            self._outbox.clear()
            self._drops += 1
            self._cut_off = True
        stream = self.key(name) if kind in STORED_KINDS else None
        self._outbox.append((stream, self.channel(name), kind, payload))
        self._outbox_ready.set()
        self._outbox_empty.clear()

    # -- the loops ------------------------------------------------------------------
    async def _write_loop(self) -> None:
        import redis

        prefix = self.origin + b"|"
        failing = False  # since the last batch that went out (one warning per outage)
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            while self._outbox:
                batch, drops = self._outbox[:READ_COUNT], self._drops
                try:
                    async with self.writer.pipeline(transaction=False) as pipe:
                        for stream, channel, kind, payload in coalesced(batch):
                            if stream is not None:
                                pipe.xadd(stream, {"o": self.origin, kind: payload},  # type: ignore[dict-item]
                                          maxlen=self.stream_length, approximate=True)
                            pipe.publish(channel, prefix + kind + payload)
                        await pipe.execute()
                except redis.RedisError as exc:
                    # Kept, in order, and sent again (an update applied twice changes nothing).
                    if not failing:
                        log.warning("replication: Redis unreachable (%s); %d messages wait",
                                    exc, len(self._outbox))
                    failing = True
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                failing = False
                if drops == self._drops:
                    del self._outbox[:len(batch)]
                if self._cut_off:  # Redis answers again: what was lost is asked for
                    self._resync()
            self._outbox_empty.set()

    async def _listen_loop(self) -> None:
        import redis

        await self._subscribed.wait()
        while True:
            try:
                # Blocking, with no timeout to arm and cancel per message: nothing here waits
                # for time to pass. redis-py reconnects and subscribes again to every channel
                # after a drop, and the confirmations say when (below).
                message = await self.pubsub.get_message(timeout=None)
            except redis.RedisError as exc:
                if not self._down:
                    log.warning("replication: Redis unreachable (%s); resyncing when it answers", exc)
                self._down, self._renewing = True, False
                await asyncio.sleep(RETRY_SECONDS)
                continue
            if message is None:
                continue
            kind = message["type"]
            if kind == "message":
                self._down = self._renewing = False
                self._receive(message["channel"], message["data"])
            elif kind == "subscribe":
                waiter = self._confirming.get(message["channel"])
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
                elif (room := self.rooms.get(message["channel"])) is not None:
                    self._renewed(room)

    def _renewed(self, room: Replica) -> None:
        """``room``'s subscription, renewed on a new connection, is confirmed: what was
        published while it was down never came, so the room resyncs (its ``r`` is answered
        from now on). redis-py's retries may have hidden the drop from the listening loop (a
        dropped connection found by a (un)subscription of another room): the confirmation,
        not an error, is what tells."""
        if not self._renewing:
            log.info("replication: Redis reachable again; resyncing %d document(s) as their "
                     "subscriptions are renewed", len(self.rooms))
            self._down, self._renewing = False, True
        log.debug("%s: subscription renewed; resyncing", room.name)
        self._send(room.name, b"r", room.state_vector())

    def _resync(self) -> None:
        """Redis takes this hub's messages again after some were lost (the queue dropped, a
        replay at opening failed): ask the other hubs for whatever every open room lacks (the
        answers to theirs carry what this hub has)."""
        self._cut_off = False
        log.info("replication: Redis reachable again; resyncing %d document(s) (messages were "
                 "lost)", len(self.rooms))
        for room in list(self.rooms.values()):
            self._send(room.name, b"r", room.state_vector())

    def _receive(self, channel: bytes, data: bytes) -> None:
        """One message of another hub on ``channel`` (see the module)."""
        origin, _, rest = data.partition(b"|")
        room = self.rooms.get(channel)
        if origin == self.origin or room is None:
            return
        kind, payload = rest[:1], rest[1:]
        try:
            if kind == b"u" or kind == b"s":
                room.apply_remote(payload)
            elif kind == b"a":
                room.apply_remote_awareness(payload)
            elif kind == b"q" or kind == b"r":
                lacking = room.missing(payload)
                if lacking is not None:
                    self._send(room.name, b"s", lacking)
                if kind == b"r":  # a resync: it may hold what this copy lacks, too
                    self._send(room.name, b"q", room.state_vector())
        except Exception:  # one bad message (written by something else) must not stop the others
            log.exception("%s: message of another hub not applied", room.name)
