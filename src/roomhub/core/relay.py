"""Any hub serves any room: a room held by one hub of a cluster, its other members relayed there.

With ``[cluster]``, a task-served room socket (:class:`~roomhub.core.face.FaceSocketEndpoint`:
pages, actions, widgets, the backends' partition socket) belongs to a room whose **lease** (its
*key*, e.g. ``pages:/p:lobby``) one hub holds at a time. When a client reaches a hub:

- the hub takes the lease, or learns its **holder** (one Redis round trip);
- holder = this hub: the connection is served here as without a cluster; the lease is renewed
  with the heartbeat while the room lives here (members, a grace period, a session) and
  released once it is gone;
- holder = another hub: this hub opens a WebSocket to the holder's same path (a
  :class:`~roomhub.transport.client_websocket.ClientWebSocket`) and **relays** the client's
  messages both ways, unchanged. The holder sees a member like any other: one set of programs,
  one scope, one session table per room. The hub-to-hub handshake carries the cluster's shared
  secret, the lease key and the client's address (:data:`RELAY_HEADER`, :data:`KEY_HEADER`,
  :data:`PEER_HEADER`), so that the holder's logs name the client. A relayed connection is
  never relayed again: a hub that does not hold the key refuses it with HTTP 409, and the
  relaying hub resolves the holder again.

Faults: when the holder dies, relayed clients are closed with 1012 (service restart) and
reconnect; the hub they reach takes the lease once it expired. A hub that loses a lease
(:meth:`ClusterLeases.on_lost`: renewal refused, or Redis unreachable for nearly the lease time)
closes that room's members with 1012 and tears it down (programs stopped) before another hub
may take it: **fencing**. A hub without ``[cluster]`` builds none of this: its sockets are
served as they always were.

The core uses the cluster through :class:`ClusterLeases`, a protocol of its own (the hub gives
it a :class:`roomhub.cluster.Cluster`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from websockets.exceptions import InvalidHandshake, InvalidStatus

from ..transport.callback_websocket import CallbackWebSocket
from ..transport.client_websocket import ClientWebSocket
from ..transport.traffic import Frame
from .errors import CloseCode

if TYPE_CHECKING:
    from .rooms import RoomRegistry

log = logging.getLogger("roomhub.relay")

RELAY_HEADER = "x-roomhub-relay"
"""Request header of a hub-to-hub connection: the cluster's shared secret."""
KEY_HEADER = "x-roomhub-relay-key"
"""Request header of a hub-to-hub connection: the lease key the relaying hub found held here."""
PEER_HEADER = "x-roomhub-relay-peer"
"""Request header of a hub-to-hub connection: the client's ``host:port``, as the relaying hub saw it."""
RELAY_HEADERS = frozenset({RELAY_HEADER.encode(), KEY_HEADER.encode(), PEER_HEADER.encode()})
"""The hub-to-hub headers (lower-case bytes), never passed on beyond the hub they were sent to."""
FORWARDED = (b"authorization", b"cookie")
"""Client headers the relaying hub passes on (the holder's token check sees what the client sent)."""
MOVED = "the room's hub changed: reconnect"
"""The reason of the 1012 close that sends a client to reconnect (lost lease, holder gone)."""


class RoomSocket(Protocol):
    """What the relay uses of a face's socket (:class:`~roomhub.core.face.FaceSocketEndpoint`)."""

    async def placement(self, sock: CallbackWebSocket, scope: dict[str, Any]) -> Placement | None: ...

    async def serve(self, sock: CallbackWebSocket, scope: dict[str, Any]) -> None: ...


class ClusterLeases(Protocol):
    """What the relay uses of the hub's cluster (:class:`roomhub.cluster.Cluster`).

    ``acquire(key)`` returns an object with ``owner`` (a run id): ``run`` when this hub holds the
    lease now, else another hub's, with ``ttl``: the seconds that hub's lease has left; it raises
    (``redis.RedisError``) when Redis cannot be reached."""

    run: str
    relay_secret: str

    @property
    def config(self) -> Any: ...  # lease_seconds, heartbeat_seconds

    async def acquire(self, room: str) -> Any: ...

    async def release(self, room: str) -> bool: ...

    def holds(self, room: str) -> bool: ...

    async def address_of(self, owner: str) -> str | None: ...

    def on_lost(self, callback: Callable[[str], None]) -> None: ...


@dataclass(frozen=True)
class HeldRoom:
    """A room as its holder sees it: ``alive()`` while this hub still has it (members, a grace
    period, a session kept for a comeback: the lease is kept meanwhile); ``drop(code, reason)``
    closes its members with that close code and reason and tears it down now (fencing)."""

    alive: Callable[[], bool]
    drop: Callable[[int, str], Awaitable[Any]]


def registry_room(registry: RoomRegistry[Any], name: str) -> HeldRoom:
    """The :class:`HeldRoom` of room ``name`` of ``registry`` (alive while the registry has it)."""
    return HeldRoom(alive=lambda: name in registry.rooms,
                    drop=lambda code, reason: registry.drop(name, code, reason))


@dataclass(frozen=True)
class Placement:
    """Where a connection belongs: the lease ``key`` of its room and the room (``held``).

    ``received``: client messages a face read before it could name the key (the widgets
    handshake), passed on to the holder first; ``sent``: how many messages it sent the client
    meanwhile, which the holder sends again and the relay drops."""

    key: str
    held: HeldRoom
    received: tuple[Frame, ...] = ()
    sent: int = 0


class _Entry:
    __slots__ = ("held", "kept_until", "lapses_at", "lock", "uses")

    def __init__(self) -> None:
        self.uses = 0  # connections served here (or deciding where) for the key
        self.held: HeldRoom | None = None
        # A lease taken for a request (locate) is kept until then even if the room is not alive
        # yet: the request makes what keeps it (an on-demand backend starts in a later task).
        self.kept_until = 0.0  # loop time
        # When another hub's lease on the key lapses unless renewed (loop time, last look).
        self.lapses_at = 0.0
        self.lock = asyncio.Lock()


class HolderGone(Exception):
    """The hub holding a lease left the cluster; its lease lapses within the lease time."""


class _NotHolder(Exception):
    """The hub relayed to does not hold the key (any more): resolve the holder again."""


class RoomRelay:
    """One hub's rooms in a cluster: which leases it holds for its faces' sockets, and the
    relaying of clients whose room another hub holds (see the module)."""

    def __init__(self, cluster: ClusterLeases) -> None:
        self.cluster = cluster
        self.lease_seconds = float(cluster.config.lease_seconds)
        self.heartbeat = float(cluster.config.heartbeat_seconds)
        self.entries: dict[str, _Entry] = {}
        self.relayed = 0  # client connections relayed from here to another hub now
        self._sweeper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        cluster.on_lost(self._lost)

    # -- life ---------------------------------------------------------------------------
    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="relay-sweep")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    # -- the handshake ------------------------------------------------------------------------
    def authenticated(self, scope: dict[str, Any]) -> bool | None:
        """Whether a request is hub-to-hub with the cluster's shared secret: None for a
        client's own request (no :data:`RELAY_HEADER`), False for a wrong secret."""
        secret = dict(scope["headers"]).get(RELAY_HEADER.encode())
        if secret is None:
            return None
        expected = self.cluster.relay_secret.encode("latin-1")
        return bool(expected) and hmac.compare_digest(secret, expected)  # no timing leak

    def refusal(self, scope: dict[str, Any]) -> tuple[int, str] | None:
        """A hub-to-hub handshake's check (None for a client's own): 403 without the shared
        secret, 409 when this hub does not hold the key it was relayed for."""
        authenticated = self.authenticated(scope)
        if authenticated is None:
            return None
        if not authenticated:
            return 403, "bad relay credentials"
        key = dict(scope["headers"]).get(KEY_HEADER.encode(), b"").decode("latin-1")
        if not self.cluster.holds(key):
            return 409, f"this hub does not hold {key!r}"
        return None

    @staticmethod
    def relayed_header(scope: dict[str, Any], name: str) -> str | None:
        """Header ``name`` of a hub-to-hub handshake (whose secret :meth:`refusal` checked); None
        for a client's own connection, whatever headers it sent."""
        headers = dict(scope["headers"])
        if RELAY_HEADER.encode() not in headers:
            return None
        value = headers.get(name.encode())
        return value.decode("latin-1")[:200] if value is not None else None

    # -- serving ------------------------------------------------------------------------------
    async def serve(self, endpoint: RoomSocket, sock: CallbackWebSocket, scope: dict[str, Any]) -> None:
        """Serve ``sock`` here if this hub holds its room (taking the lease if free), else relay
        it to the holder; ``sock`` is closed with 1013 when no hub can serve it within two lease
        times (Redis unreachable, the holder unreachable and its lease not expiring)."""
        placement = await endpoint.placement(sock, scope)
        if sock.closing:  # refused while the face talked with the client (a bad handshake)
            return
        if placement is None:
            await endpoint.serve(sock, scope)
            return
        key = placement.key
        relayed_key = self.relayed_header(scope, KEY_HEADER)
        if relayed_key is not None:  # from another hub: served here or refused, never relayed on
            if relayed_key != key:
                sock.close(CloseCode.POLICY_VIOLATION, "relayed for another room")
                return
            entry = self._entry(key)
            entry.uses += 1
            if not self.cluster.holds(key):
                entry.uses -= 1
                sock.close(CloseCode.SERVICE_RESTART, MOVED)
                return
            await self._serve_here(endpoint, sock, scope, placement, entry)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2 * self.lease_seconds + 1
        pause = 0.0  # none before the first retry after a refusal: the lease has just moved
        while not sock.closing:
            entry = self._entry(key)
            entry.uses += 1
            try:
                address = await self.locate(key, placement.held)
            except HolderGone:
                address = ""
            except Exception as exc:
                entry.uses -= 1
                log.warning("%s: the cluster cannot say who holds %s: %s", sock.label, key, exc)
                sock.close(CloseCode.TRY_AGAIN_LATER, "cluster unavailable: try again later")
                return
            if address is None:
                await self._serve_here(endpoint, sock, scope, placement, entry)
                return
            entry.uses -= 1
            wait = self.retry_after(key)  # a gone holder's lease lapses within the lease time
            if address:
                try:
                    await self._relay(sock, scope, address, placement)
                    return
                except (OSError, TimeoutError, InvalidHandshake) as exc:
                    log.info("%s: holder of %s at %s unreachable: %s", sock.label, key, address, exc)
                except _NotHolder:  # the lease moved meanwhile (or is being lost there): ask again
                    wait, pause = pause, self.heartbeat / 4
            if loop.time() > deadline:
                sock.close(CloseCode.TRY_AGAIN_LATER, "the room's hub cannot be reached: try again later")
                return
            await asyncio.sleep(wait)

    async def locate(self, key: str, held: HeldRoom) -> str | None:
        """One look at ``key``'s lease: None when this hub holds it (taken now if it was free,
        then kept for one lease time, which the request has to make its room, and while
        ``held`` is alive, see :meth:`sweep`), else the holder's ``host:port``.

        Raises :class:`HolderGone` when the holder left the cluster (its lease lapses within
        the lease time: look again after a heartbeat), ``redis.RedisError`` or ``OSError``
        when Redis cannot be reached."""
        entry = self._entry(key)
        async with entry.lock:
            holder = await self.cluster.acquire(key)
            now = asyncio.get_running_loop().time()
            if holder.owner == self.cluster.run:
                entry.held = held
                entry.kept_until = now + self.lease_seconds
                return None
            entry.lapses_at = now + holder.ttl
            address = await self.cluster.address_of(holder.owner)
        if address is None:
            raise HolderGone(f"the hub holding {key!r} left the cluster")
        return str(address)

    def retry_after(self, key: str) -> float:
        """Seconds to wait before looking at ``key``'s lease again when its holder cannot be
        reached or left the cluster: until the lease lapses (as the last :meth:`locate` read
        its time left; a killed holder renews it no more), at least 10 ms and at most a
        heartbeat (a holder that renews it meanwhile is looked at again then)."""
        entry = self.entries.get(key)
        if entry is None:
            return self.heartbeat
        left = entry.lapses_at - asyncio.get_running_loop().time() + 0.002  # Redis expires keys to the ms
        return min(self.heartbeat, max(0.01, left))

    async def claim(self, key: str, held: HeldRoom) -> bool:
        """Take ``key``'s lease for a room this hub has just made under a new name (a new
        widgets session), so that its members reaching other hubs are relayed here; kept until
        ``held`` is no longer alive. False when another hub holds it. Raises when Redis cannot
        be reached."""
        entry = self._entry(key)
        entry.held = held
        async with entry.lock:
            holder = await self.cluster.acquire(key)
        return bool(holder.owner == self.cluster.run)

    def _entry(self, key: str) -> _Entry:
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = _Entry()
        return entry

    async def _serve_here(self, endpoint: RoomSocket, sock: CallbackWebSocket, scope: dict[str, Any],
                          placement: Placement, entry: _Entry) -> None:
        entry.held = placement.held
        try:
            await endpoint.serve(sock, scope)
        finally:
            entry.uses -= 1

    async def _relay(self, sock: CallbackWebSocket, scope: dict[str, Any], address: str,
                     placement: Placement) -> None:
        """Relay ``sock`` to the hub at ``address`` until either side closes. Raises
        :class:`_NotHolder` (409) or a connection error before anything was relayed."""
        query = scope["query_string"].decode("latin-1")
        url = f"ws://{address}{scope['path']}" + (f"?{query}" if query else "")
        headers = [(RELAY_HEADER, self.cluster.relay_secret), (KEY_HEADER, placement.key),
                   (PEER_HEADER, sock.peer)]
        headers += [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"] if k in FORWARDED]
        skip = placement.sent  # messages the face sent the client here already (its first ones)
        resuming: list[asyncio.Task[None]] = []

        def to_client(message: str | bytes) -> None:
            nonlocal skip
            if skip:
                skip -= 1
                return
            if not sock.send(message):
                upstream.close()
            elif not sock.is_drained and not resuming:
                # The holder's send window then holds what the client cannot take (TCP).
                upstream.pause_reading()
                resuming.append(asyncio.ensure_future(resume()))

        async def resume() -> None:
            try:
                await sock.drained.wait()
            finally:
                resuming.clear()
                upstream.resume_reading()

        try:
            # Pings within the lease time: a holder cut off without a reset is noticed as fast as
            # its lease would expire. Messages are bounded by the holder's own limit already.
            upstream = await ClientWebSocket.connect(
                url, to_client, headers=headers, open_timeout=self.lease_seconds,
                ping_interval=self.lease_seconds,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status == 409:
                raise _NotHolder from None
            # The holder's own refusal (its connection limit, its door): the client's to know.
            detail = exc.response.body.decode(errors="replace")[:80] if exc.response.body else ""
            log.info("%s: holder at %s refused the relay: %d %s", sock.label, address, status, detail)
            code = CloseCode.TRY_AGAIN_LATER if status == 503 else CloseCode.POLICY_VIOLATION
            sock.close(code, f"the room's hub refused: HTTP {status}")
            return
        self.relayed += 1
        log.debug("%s: relayed to %s for %s", sock.label, address, placement.key)
        for frame in placement.received:
            upstream.send(frame)
        to_holder = asyncio.create_task(self._to_holder(sock, upstream))
        try:
            await upstream.closed
        finally:
            self.relayed -= 1
            for task in (to_holder, *resuming):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await to_holder
            upstream.abort()
        sock.close(*_client_close(upstream))

    @staticmethod
    async def _to_holder(sock: CallbackWebSocket, upstream: ClientWebSocket) -> None:
        while (frame := await sock.next_frame()) is not None:
            if sock.close_code is not None:  # closed by this hub (a limit): nothing more to pass on
                break
            if not upstream.send(frame):
                return
            await upstream.drain()  # the holder reads no faster: nor does this client get read
        upstream.close()

    # -- leases ------------------------------------------------------------------------------
    def _lost(self, key: str) -> None:
        entry = self.entries.get(key)
        if entry is None or entry.held is None:
            return
        log.warning("room %s: lease lost, closing its members here (1012) and tearing it down", key)
        task = asyncio.ensure_future(entry.held.drop(CloseCode.SERVICE_RESTART, MOVED))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                await self.sweep()
            except Exception as exc:  # Redis away: the lease lapses by itself, the room with it
                log.debug("relay: releasing leases failed: %s", exc)

    async def sweep(self) -> None:
        """Release the lease of every room no longer here (no connection, gone from its face);
        forget entries nobody uses."""
        now = asyncio.get_running_loop().time()
        for key, entry in list(self.entries.items()):
            if entry.uses or entry.lock.locked() or entry.kept_until > now or (
                    entry.held is not None and entry.held.alive()):
                continue
            async with entry.lock:
                if entry.uses or entry.kept_until > now or (entry.held is not None and entry.held.alive()):
                    continue
                if entry.held is not None:
                    await self.cluster.release(key)
                    log.debug("room %s: gone here, lease released", key)
                if self.entries.get(key) is entry and not entry.uses:
                    del self.entries[key]

    def keep_claiming(self, key: str, held: HeldRoom,
                      holding: Callable[[], Awaitable[Any]]) -> asyncio.Task[None]:
        """A standing claim: take ``key``'s lease for ``held`` now and retry every heartbeat
        while another hub holds it (a room that lives on one hub of the cluster with or without
        members: the actions face's processes). ``holding()`` is awaited at every heartbeat at
        which this hub holds the key, however it took it (here or for a client), so it must do
        nothing when what it starts runs already. The lease is kept while ``held.alive()`` and
        lost as any room's: ``held.drop`` is called (fencing), then the claim goes on. Errors
        (Redis unreachable) are logged and retried. Returns the task: cancel it to stop claiming."""

        async def claiming() -> None:
            while True:
                try:
                    if self.cluster.holds(key) or await self.claim(key, held):
                        await holding()
                except Exception as exc:
                    log.debug("room %s: claiming its lease failed: %s", key, exc)
                await asyncio.sleep(self.heartbeat)

        return asyncio.create_task(claiming(), name=f"relay-claim:{key}")


def _client_close(upstream: ClientWebSocket) -> tuple[int, str]:
    """The close a relayed client gets when its holder connection ended: the holder's own code
    and reason, or 1012 (reconnect) when the holder went away or vanished."""
    received = upstream.close_rcvd
    if received is None or received.code in (CloseCode.GOING_AWAY, 1005, 1006):
        return CloseCode.SERVICE_RESTART, MOVED
    if received.code == CloseCode.INTERNAL_ERROR and "keepalive" in received.reason:
        return CloseCode.SERVICE_RESTART, MOVED
    return received.code, received.reason
