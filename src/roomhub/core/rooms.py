"""Rooms: one lifecycle mechanism for every face.

A room is keyed by a name inside a namespace (a page, the documents face, a
backends partition...). The first join creates it, the last leave tears it
down (after an optional grace period). Creation and teardown of one name are
serialised by a per-name lock, so:

- concurrent first joins create the room once;
- a join that arrives while the room is being torn down waits, then gets a
  fresh room.

Faces subclass :class:`Room` and override :meth:`Room.on_create`,
:meth:`Room.on_teardown` and :meth:`Room.on_join`. What a room holds is a
:class:`Member`: any face's client connection (a
:class:`~roomhub.transport.callback_websocket.CallbackWebSocket`) or a handle
standing for server code; a face's room says which (``Room[CallbackWebSocket]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from ..logs import log_context
from ..transport.receive_budget import ReceiveBudget
from ..transport.traffic import Frame
from .bus import Bus, LocalBus
from .errors import CloseCode, RoomError

if TYPE_CHECKING:
    from .metrics import RoomMetrics

log = logging.getLogger("roomhub.rooms")

ROOM_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~:@+=-]*$")


def validate_room_name(name: str | None, max_length: int = 128) -> str:
    """Return ``name`` if it is a valid room name, else raise ``ValueError`` saying why.

    Valid: 1 to ``max_length`` characters, letters, digits and ``._~:@+=-``,
    starting with a letter or digit.
    """
    if not name:
        raise ValueError("missing room name")
    if len(name) > max_length:
        raise ValueError(f"room name longer than {max_length} characters")
    if not ROOM_NAME_RE.match(name):
        raise ValueError(
            "room name may only contain letters, digits and ._~:@+=- and must start "
            "with a letter or digit"
        )
    return name


class Member(Protocol):
    """What a room needs of a member, whichever face's it is.

    ``send`` never waits (False: the member is closing); ``close`` starts closing with a
    :class:`~roomhub.core.errors.CloseCode` and a reason; ``is_drained`` and ``drained``
    follow the member's send window (False / cleared from its high water mark until its low
    one, see :mod:`roomhub.transport.send_window`); ``label`` and ``peer`` name it in logs.
    """

    closing: bool

    @property
    def label(self) -> str: ...

    @property
    def peer(self) -> str: ...

    @property
    def is_drained(self) -> bool: ...

    @property
    def drained(self) -> asyncio.Event: ...

    def send(self, frame: Frame) -> bool: ...

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None: ...


M = TypeVar("M", bound=Member)


class Room(Generic[M]):
    """A named place shared by its members (``M``: the face's kind of :class:`Member`).

    Frames the server broadcasts reach every member; what a client sends is
    never echoed by the room itself. ``namespace`` and ``name`` identify it.
    ``receive_budget`` is the bucket every member's messages draw from (made by the
    first member to join, per ``limits.room_receive_rate``; None: no room limit).
    """

    def __init__(self, namespace: str, name: str, bus: Bus) -> None:
        self.namespace = namespace
        self.name = name
        self.members: set[M] = set()
        self.created_at = time.time()
        self.bus = bus
        self.topic = f"{namespace}\x00{name}"
        self.receive_budget: ReceiveBudget | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.namespace}:{self.name} members={len(self.members)}>"

    # -- to override -------------------------------------------------------
    async def on_create(self) -> None:
        """Prepare the room (before any member joins). Raise to refuse creation."""

    async def on_teardown(self) -> None:
        """Release everything; called once, after the last member left (or on shutdown)."""

    async def on_join(self, connection: M) -> None:
        """Send a new member the state it needs (it is already in ``members``)."""

    def describe(self) -> dict[str, Any]:
        """A JSON view for the REST API."""
        return {
            "namespace": self.namespace,
            "name": self.name,
            "clients": len(self.members),
            "created_at": self.created_at,
        }

    # -- broadcast ----------------------------------------------------------
    def broadcast(self, frame: Frame) -> None:
        """Send one encoded frame to every member (through the bus)."""
        self.bus.publish(self.topic, frame)

    async def wait_writable(self) -> None:
        """Wait until at least one member can take more frames (backpressure for producers).

        A producer that can pause (a program's output pump) calls this before
        each broadcast, so it runs at the pace of the fastest member; members
        that cannot keep up overflow their own queue and are closed
        (:attr:`CloseCode.SLOW_CONSUMER`) without slowing the others.
        """
        members = [m for m in self.members if not m.closing]
        if not members or any(m.is_drained for m in members):
            return
        waiters = {asyncio.ensure_future(m.drained.wait()) for m in members}
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    def _deliver(self, frame: Frame) -> None:
        for member in tuple(self.members):
            member.send(frame)


R = TypeVar("R", bound="Room[Any]")


class RoomRegistry(Generic[R]):
    """The rooms of one namespace, created on first join and torn down on last leave.

    ``factory(name)`` builds a room; ``grace_period`` (seconds) keeps an empty
    room alive in case somebody comes back; None keeps it until :meth:`drop` (a room
    whose life is its session's: the session store's reaping drops it). ``max_rooms`` and
    ``max_clients`` bound the namespace; exceeding them raises
    :class:`RoomError` with :attr:`CloseCode.TRY_AGAIN_LATER`.
    """

    def __init__(
        self,
        namespace: str,
        factory: Callable[[str], R],
        *,
        grace_period: float | None = 0.0,
        max_rooms: int = 1000,
        max_clients: int = 200,
        bus: Bus | None = None,
    ) -> None:
        self.namespace = namespace
        self.factory = factory
        self.grace_period = grace_period
        self.max_rooms = max_rooms
        self.max_clients = max_clients
        self.bus = bus or LocalBus()
        self.rooms: dict[str, R] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._timers: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False
        self.metrics: RoomMetrics | None = None  # given by the hub (HubMetrics.watch)

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    def get(self, name: str) -> R | None:
        return self.rooms.get(name)

    async def join(self, name: str, connection: Member) -> R:
        """Add ``connection`` to room ``name``, creating the room if needed.

        Raises :class:`RoomError` when a limit is reached, the hub is closing
        or the room's creation failed (then with :attr:`CloseCode.ROOM_FAILED`).
        """
        async with self._lock(name):
            if self.closed:
                raise RoomError(CloseCode.GOING_AWAY, "hub shutting down")
            timer = self._timers.pop(name, None)
            if timer:
                timer.cancel()
            room = self.rooms.get(name)
            if room is None:
                if len(self.rooms) >= self.max_rooms:
                    raise RoomError(
                        CloseCode.TRY_AGAIN_LATER, f"room limit reached ({self.max_rooms})"
                    )
                room = await self._create(name)
            if len(room.members) >= self.max_clients:
                raise RoomError(
                    CloseCode.TRY_AGAIN_LATER, f"room is full ({self.max_clients} clients)"
                )
            room.members.add(connection)
            # Its messages count against the room's share too (a member standing for the hub's
            # own code, the documents' Python API, has no budget).
            budget = getattr(connection, "budget", None)
            if budget is not None:
                room.receive_budget = budget.join(room.receive_budget)
        if self.metrics is not None:
            self.metrics.joins.inc()
        try:
            await room.on_join(connection)
        except Exception:
            log.exception("%r: sending the state to %s failed", room, connection.label)
        return room

    async def _create(self, name: str) -> R:
        # The room's own tasks (programs, timers) start here: they belong to no connection.
        with log_context(connection=None):
            return await self._create_room(name)

    async def _create_room(self, name: str) -> R:
        room = self.factory(name)
        started = time.perf_counter()
        try:
            await room.on_create()
        except Exception as exc:
            log.warning("%s:%s: creation failed: %s", self.namespace, name, exc)
            with contextlib.suppress(Exception):
                await room.on_teardown()
            raise RoomError(CloseCode.ROOM_FAILED, f"room creation failed: {exc}") from exc
        room._unsubscribe = self.bus.subscribe(room.topic, room._deliver)
        self.rooms[name] = room
        elapsed = time.perf_counter() - started
        if self.metrics is not None:
            self.metrics.created.observe(elapsed)
        log.info("%s:%s: room created in %.1f ms", self.namespace, name, elapsed * 1000,
                 extra={"room": f"{self.namespace}:{name}"})
        return room

    async def leave(self, room: R, connection: Member) -> None:
        """Remove ``connection``; the last leave schedules teardown.

        Safe to call from a ``finally`` of a cancelled handler: the teardown
        runs in its own task, which :meth:`close` waits for.
        """
        room.members.discard(connection)
        budget = getattr(connection, "budget", None)
        if budget is not None and budget.room is room.receive_budget:
            budget.leave()
        if self.metrics is not None:
            self.metrics.leaves.inc()
        if room.members or self.rooms.get(room.name) is not room or self.grace_period is None:
            return
        if self.grace_period > 0 and not self.closed:
            self._timers[room.name] = self._spawn(self._teardown_later(room))
        else:
            self._spawn(self._teardown_if_empty(room))

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _teardown_later(self, room: R) -> None:
        await asyncio.sleep(self.grace_period or 0.0)
        self._timers.pop(room.name, None)
        await self._teardown_if_empty(room)

    async def _teardown_if_empty(self, room: R) -> None:
        async with self._lock(room.name):
            if room.members or self.rooms.get(room.name) is not room:
                return
            await self._teardown(room)

    async def _teardown(self, room: R) -> None:
        del self.rooms[room.name]
        if room._unsubscribe:
            room._unsubscribe()
        started = time.perf_counter()
        try:
            await room.on_teardown()
        except Exception:
            log.exception("%r: teardown failed", room)
        finally:
            lock = self._locks.get(room.name)
            if lock is not None and not lock._waiters:  # nobody waits: forget the lock
                self._locks.pop(room.name, None)
        elapsed = time.perf_counter() - started
        if self.metrics is not None:
            self.metrics.torn_down.observe(elapsed)
        log.info("%s:%s: room torn down in %.1f ms", self.namespace, room.name, elapsed * 1000,
                 extra={"room": f"{self.namespace}:{room.name}"})

    async def drop(self, name: str, code: int = CloseCode.NORMAL, reason: str = "room closed") -> bool:
        """Close every member of room ``name`` and tear it down now. Returns False if absent."""
        async with self._lock(name):
            room = self.rooms.get(name)
            if room is None:
                return False
            timer = self._timers.pop(name, None)  # the grace period of an empty room ends here
            if timer:
                timer.cancel()
            members = tuple(room.members)
            room.members.clear()
            for member in members:
                member.close(code, reason)
            await self._teardown(room)
            return True

    async def close(self, timeout: float = 10.0) -> None:
        """Shut the namespace down: close every member (1001) and tear every room down.

        Bounded by ``timeout`` seconds; rooms still tearing down after that are
        logged and abandoned.
        """
        self.closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for name in list(self.rooms):
            self._spawn(self.drop(name, CloseCode.GOING_AWAY, "hub shutting down"))
        pending = [t for t in self._tasks if not t.done()]
        if not pending:
            return
        _, still = await asyncio.wait(pending, timeout=timeout)
        if still:
            log.error("%s: %d room teardowns did not finish in %.0f s", self.namespace, len(still), timeout)
            for task in still:
                task.cancel()
