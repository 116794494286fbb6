"""A widget session: one UI, its Python-side state, and the browsers showing it.

A :class:`WidgetSession` is a room of the ``widgets`` namespace named by its
session id. It outlives its connections: its id, resume token and reaping are
the core's (:class:`roomhub.core.sessions.SessionStore`, kept by the face), so
a session without a browser is reaped after ``widgets.idle_timeout`` seconds
and its room dropped then; ``max_sessions`` is the registry's room limit, so a
slot is freed whenever a session ends, whatever happened before.

Calls (pgwidgets' method kinds, see :mod:`.classes`):

- setters and items are recorded into the :class:`~.journal.Journal` and the
  widget's state, then sent to every attached browser; the caller does not
  wait for the answer (it is matched by id, an error is logged), but at most
  ``max_inflight_calls`` may be unanswered before callers wait (flow control);
- getters are answered from state when it is known, else they are a round trip
  to the browser, bounded by ``call_timeout`` (:class:`CallTimeout`);
- with no browser attached, calls are only recorded (replayed on attach) and
  round trips raise :class:`NoBrowser`; when the last browser leaves, waiting
  calls fail with :class:`NoBrowser` instead of hanging.

Browser callbacks update the state (and are pushed to the other browsers as
``silent`` calls, so several browsers stay in step), then run the handlers one
at a time on the session's worker task.

The handles a program holds live here too: :class:`Widget` (any method name is
a call on the session) and :class:`WidgetFactory` (``session.widgets``); the
session makes them, they call the session. What the session uses of its app
is :class:`App` (a Protocol that :class:`roomhub.widgets.App` meets).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..core.errors import CloseCode
from ..core.rooms import Room
from ..jsonlimits import DEFAULT_MAX_DEPTH
from ..transport.callback_websocket import CallbackWebSocket
from . import classes as C
from . import protocol as p
from .journal import Journal
from .renderer import widget_defs
from .uploads import UploadError, UploadTracker

if TYPE_CHECKING:
    from ..core.bus import Bus
    from .config import WidgetsConfig

log = logging.getLogger("roomhub.widgets")

REPLAY_FRAME_MESSAGES = 500  # messages per array frame during a replay
MAX_QUEUED_EVENTS = 1000  # browser events waiting for the handlers
MAX_BAD_MESSAGES = 50  # bad messages from one connection before it is closed
MAX_WID = 2**31  # widget ids a browser may report (pgwidgets-js counts from 1)


class WidgetsError(Exception):
    """Base of the errors a widget call raises."""


class NoBrowser(WidgetsError):
    """A round trip was needed but no browser is attached (or it left while waiting)."""


class CallTimeout(WidgetsError):
    """The browser did not answer within ``call_timeout`` seconds."""


class CallError(WidgetsError):
    """The browser answered with an ``error`` message (the text is the browser's)."""


class SessionClosed(WidgetsError):
    """The session has ended (reaped, closed, or the hub is stopping)."""


@dataclass
class _Pending:
    future: asyncio.Future[Any] | None  # None: nobody waits, only the answer is checked
    deadline: float
    what: str


Handler = Callable[..., Any]


class App(Protocol):
    """What a session uses of its app (:class:`roomhub.widgets.App`): the handlers to run, where
    their failures are logged, whether getters answer from state, and the face serving it
    (``None`` when not served)."""

    connect_handlers: list[Handler]
    disconnect_handlers: list[Handler]
    close_handlers: list[Handler]
    logger: logging.Logger
    local_getters: bool
    face: Any


def _is(registered: Handler, handler: Handler) -> bool:
    """``registered`` is ``handler``, or its wrapper with extra arguments (:func:`with_extra`)."""
    return registered is handler or getattr(registered, "__wrapped__", None) is handler


def _keep_state(*args: Any) -> None:
    """The handler of a callback listened to only for the state it reports."""


class WidgetSession(Room[CallbackWebSocket]):
    """One UI. ``id`` and ``token`` are its credentials; ``widgets`` makes widgets."""

    def __init__(
        self, name: str, app: App, config: WidgetsConfig, bus: Bus,
        max_json_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        super().__init__("widgets", name, bus)
        self.id = name
        self.token: str | None = None
        self.app = app
        self.config = config
        self.max_json_depth = max_json_depth  # levels of a browser's frame (server.limits)
        self.data: dict[str, Any] = {}  # free for the app
        self.viewport: tuple[int, int] | None = None
        self.browsers: list[CallbackWebSocket] = []
        self.left_at = time.monotonic()  # when the last browser left (monotonic seconds)
        self.journal = Journal()
        self.state: dict[int, dict[str, Any]] = {}
        self.classes: dict[int, str] = {}
        self.handlers: dict[tuple[int, str], list[tuple[Handler, bool]]] = {}
        self._widgets: dict[int, Widget] = {}
        self._next_wid = 1
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._recent: deque[int] = deque(maxlen=4096)
        self._recent_set: set[int] = set()
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._batch: list[dict[str, Any]] | None = None
        self._uploads: dict[int, UploadTracker] = {}
        self._bad: dict[int, int] = {}
        # Browser events for the handlers, and the worker's wake-up while it waits for one.
        self._events: deque[tuple[Callable[[], Any], str]] = deque()
        self._events_waiter: asyncio.Future[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self.closed = False

    # -- lifecycle (RoomRegistry) -------------------------------------------
    async def on_create(self) -> None:
        self._tasks = [
            asyncio.create_task(self._worker(), name=f"widgets:{self.id}:worker"),
            asyncio.create_task(self._sweeper(), name=f"widgets:{self.id}:sweeper"),
        ]

    async def on_teardown(self) -> None:
        self.closed = True
        for conn in tuple(self.browsers):
            conn.close(CloseCode.GOING_AWAY, "session ended")
        self.browsers.clear()
        self._fail_pending(SessionClosed(f"session {self.id} ended"))
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for handler in self.app.close_handlers:
            await self._run_handler(handler, (self,), "on_close")
        log.info("widgets session %s ended (%d widgets)", self.id, len(self.classes))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "browsers": len(self.browsers), "widgets": len(self.classes)}

    # -- browsers -----------------------------------------------------------
    def attach(self, conn: CallbackWebSocket) -> None:
        """Show this session in a browser that finished the handshake.

        Sends ``session-info``; a new session runs the app's ``on_connect``, a
        known one is replayed (``reconstruct-start`` ... ``reconstruct-end``)
        to this browser only. Nothing awaits here, so no other message can
        reach ``conn`` before its replay.
        """
        assert self.token is not None
        conn.send(p.encode(p.session_info(self.id, self.token)))
        if self._started:
            self._replay(conn)
        self.browsers.append(conn)
        self._uploads[conn.id] = UploadTracker(self.config.upload_max_bytes)
        if not self._started:
            self._started = True
            for handler in self.app.connect_handlers:
                self._enqueue(lambda h=handler: h(self), "on_connect")

    def detach(self, conn: CallbackWebSocket) -> None:
        """``conn`` left; with no browser left, waiting calls fail with :class:`NoBrowser`."""
        if conn in self.browsers:
            self.browsers.remove(conn)
        self._uploads.pop(conn.id, None)
        self._bad.pop(conn.id, None)
        if not self.browsers:
            self.left_at = time.monotonic()
            self._fail_pending(NoBrowser("the browser disconnected"))
            for handler in self.app.disconnect_handlers:
                self._enqueue(lambda h=handler: h(self), "on_disconnect")

    def _replay(self, conn: CallbackWebSocket) -> None:
        batch: list[dict[str, Any]] = []

        def flush() -> None:
            if batch:
                conn.send(p.encode(batch))
                batch.clear()

        messages = itertools.chain(
            (p.reconstruct_start(next(self._ids), self._next_wid),),
            self.journal.messages(self._ids),
            (p.reconstruct_end(next(self._ids)),),
        )
        deadline = time.monotonic() + self.config.call_timeout
        for msg in messages:
            self._pending[msg["id"]] = _Pending(None, deadline, f"replay {msg['type']}")
            batch.append(msg)
            if len(batch) >= REPLAY_FRAME_MESSAGES:
                flush()
        flush()

    # -- sending ------------------------------------------------------------
    def _send(
        self,
        msg: dict[str, Any],
        future: asyncio.Future[Any] | None,
        what: str,
        exclude: CallbackWebSocket | None = None,
    ) -> None:
        text = p.encode(msg)
        self._pending[msg["id"]] = _Pending(
            future, time.monotonic() + self.config.call_timeout, what
        )
        if exclude is None:
            self.broadcast(text)  # through the bus, like every face's broadcasts
            return
        # The other browsers, kept in step with a change one of them made: not a broadcast
        # (the one that made it must not get its own change back while its user goes on).
        for conn in self.browsers:
            if conn is not exclude:
                conn.send(text)

    def _deliver(self, frame: str | bytes) -> None:
        """A broadcast from the bus: to the browsers attached (a member still being attached
        gets its replay first). What a connection is sent in one turn of the loop leaves in one
        write at its end."""
        for conn in self.browsers:
            conn.send(frame)

    async def _window(self) -> None:
        """Wait while ``max_inflight_calls`` calls are unanswered (flow control)."""
        while self.browsers and len(self._pending) >= self.config.max_inflight_calls:
            fut = asyncio.get_running_loop().create_future()
            self._slot_waiters.append(fut)
            await fut

    def _wake(self) -> None:
        while self._slot_waiters and (
            len(self._pending) < self.config.max_inflight_calls or not self.browsers
        ):
            fut = self._slot_waiters.popleft()
            if not fut.done():
                fut.set_result(None)

    def _fail_pending(self, exc: Exception) -> None:
        for pending in self._pending.values():
            if pending.future is not None and not pending.future.done():
                pending.future.set_exception(exc)
        self._pending.clear()
        self._wake()

    async def _emit(self, wid: int, method: str, args: list[Any]) -> None:
        """Send a call nobody waits for (or add it to the open batch)."""
        if self._batch is not None:
            self._batch.append({"wid": wid, "method": method, "args": args})
            return
        if not self.browsers:
            return
        await self._window()
        if self.browsers:
            self._send(p.call(next(self._ids), wid, method, args), None, f"{method} on {wid}")

    async def _round_trip(self, msg: dict[str, Any], timeout: float | None) -> Any:
        if self.closed:
            raise SessionClosed(f"session {self.id} ended")
        if self._batch:
            await self._flush_batch()
        if not self.browsers:
            raise NoBrowser(
                f"{msg.get('method', msg['type'])} needs a browser and none is attached"
            )
        await self._window()
        if not self.browsers:
            raise NoBrowser("the browser disconnected")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._send(msg, future, f"{msg.get('method', msg['type'])} on {msg.get('wid')}")
        if timeout is not None:
            self._pending[msg["id"]].deadline = time.monotonic() + timeout
        return await future

    # -- the Python API's entry points (used by Widget) -----------------
    async def create(self, cls: str, args: list[Any], kwargs: dict[str, Any]) -> Widget:
        """Create a widget of class ``cls``; keywords that are not options become setters."""
        if self.closed:
            raise SessionClosed(f"session {self.id} ended")
        made = C.construction(cls, args, kwargs)
        wire_args = self.to_wire(made.args)
        wid = self._next_wid
        self._next_wid += 1
        self.classes[wid] = cls
        self.state[wid] = C.initial_state(cls, made)
        widget = self._widgets[wid] = Widget(self, wid, cls)
        self.journal.create(wid, cls, wire_args)
        if self._batch:
            await self._flush_batch()  # calls buffered before this create go first
        if self.browsers:
            await self._window()
            if self.browsers:
                self._send(p.create(next(self._ids), wid, cls, wire_args), None, f"create {cls}")
        if self.app.local_getters:  # keep what the user changes known (see api.Application)
            for action in C.state_actions(cls):
                self.listen(wid, action, _keep_state, pass_widget=False)
        for name, value in made.setters.items():
            await self.call(wid, f"set_{name}", [value])
        return widget

    async def call(
        self,
        wid: int,
        method: str,
        args: list[Any],
        *,
        wait: bool = False,
        timeout: float | None = None,
    ) -> Any:
        """Call ``method`` on widget ``wid`` (see the module doc for what is sent and when).

        ``wait=True`` makes any call a round trip returning the browser's value.
        Raises :class:`NoBrowser`, :class:`CallTimeout`, :class:`CallError` or
        :class:`SessionClosed` for round trips.
        """
        if self.closed:
            raise SessionClosed(f"session {self.id} ended")
        if wid not in self.classes:
            raise WidgetsError(f"widget {wid} does not exist (destroyed?)")
        made = C.made_by(self.classes[wid], method, args)
        if made is not None:
            return await self._make(wid, made)
        if (self.classes[wid], method) in C.RETURN_BROWSER_WIDGETS and self.browsers:
            wait = True
        info = C.classify(method)
        if info.kind in ("getter", "query") and not wait:
            state = self.state[wid]
            if info.key in state and self._state_known(wid, info.key):
                return state[info.key]
            return self.from_wire(
                await self._round_trip(
                    p.call(next(self._ids), wid, method, self.to_wire(args)), timeout
                )
            )
        wire_args = self.to_wire(args)
        self._record(wid, method, info, args, wire_args)
        if wait:
            value = await self._round_trip(p.call(next(self._ids), wid, method, wire_args), timeout)
            return self.from_wire(value)
        if method == "destroy":
            self._forget(wid)
        await self._emit(wid, method, wire_args)
        return None

    async def _make(self, parent: int, made: C.Made) -> Widget:
        """Make the widget a factory method (``Menu.add_name``...) would make in the browser,
        under an id of ours, and attach it to ``parent`` the way that method does."""
        child = await self.create(made.cls, [], made.options)
        attach_args = [child if a is C.CHILD else a for a in made.attach_args]
        await self.call(parent, made.attach, attach_args)
        return child

    def _state_known(self, wid: int, key: str) -> bool:
        """False for state the user may have changed without telling us (see ``USER_KEYS``)."""
        actions = C.USER_KEYS.get((self.classes[wid], key))
        return actions is None or any((wid, a) in self.handlers for a in actions)

    def _record(
        self, wid: int, method: str, info: C.MethodInfo, args: list[Any], wire_args: list[Any]
    ) -> None:
        cls = self.classes[wid]
        if info.kind == "setter":
            assert info.key is not None
            self.state[wid][info.key] = C.setter_value(method, args)
            wipes = C.CONTENT_RESETS.get(method, frozenset())
            if method == "set_text" and cls in C.TEXT_RESET_CLASSES:
                wipes = C._TEXT
            if method in ("clear", "set_rows", "set_data", "set_tree"):
                self.state[wid].pop("selected", None)
            self.journal.setter(wid, info.key, method, wire_args, wipes)
        elif info.kind == "item":
            if method in C.REMOVE_METHODS and args and hasattr(args[0], "wid"):
                self.journal.remove_child(wid, args[0].wid)
            elif method == "remove_all":
                self.journal.remove_items(wid, C.CHILD_METHODS)
            elif method != "destroy":
                self.journal.item(wid, method, wire_args)

    def _forget(self, wid: int) -> None:
        self.journal.forget(wid)
        self.classes.pop(wid, None)
        self.state.pop(wid, None)
        self._widgets.pop(wid, None)
        for key in [k for k in self.handlers if k[0] == wid]:
            del self.handlers[key]

    def listen(self, wid: int, action: str, handler: Handler, pass_widget: bool) -> None:
        """Run ``handler`` on ``action``; the first handler of an action sends ``listen``."""
        key = (wid, action)
        first = key not in self.handlers
        self.handlers.setdefault(key, []).append((handler, pass_widget))
        if first:
            self.journal.listen(wid, action)
            if self.browsers:
                self._send(p.listen(next(self._ids), wid, action), None, f"listen {action}")

    def unlisten(self, wid: int, action: str, handler: Handler | None = None) -> None:
        """Remove ``handler`` (or every handler) of ``action``; the last one sends ``unlisten``."""
        key = (wid, action)
        handlers = self.handlers.get(key, [])
        handlers[:] = [] if handler is None else [h for h in handlers if not _is(h[0], handler)]
        if not handlers and key in self.handlers:
            del self.handlers[key]
            self.journal.unlisten(wid, action)
            if self.browsers:
                self._send(p.unlisten(next(self._ids), wid, action), None, f"unlisten {action}")

    @contextlib.asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        """Buffer the calls made inside into one ``batch`` message (nested: the outer one sends)."""
        if self._batch is not None:
            yield
            return
        self._batch = []
        try:
            yield
        finally:
            await self._flush_batch(final=True)

    async def _flush_batch(self, final: bool = False) -> None:
        calls, self._batch = self._batch or [], None if final else []
        if calls and self.browsers:
            await self._window()
            if self.browsers:
                self._send(p.batch(next(self._ids), calls), None, f"batch of {len(calls)}")

    async def close(self) -> None:
        """End this session now: close its browsers (1000) and free its slot."""
        face = self.app.face
        if face is not None:
            await face.registry.drop(self.id, CloseCode.NORMAL, "session closed by the app")

    @property
    def widgets(self) -> WidgetFactory:
        """The widget factory: ``await session.widgets.Button("OK")``."""
        return WidgetFactory(self)

    def get_widgets(self) -> WidgetFactory:
        """The widget factory, as pgwidgets names it: ``W = session.get_widgets()``."""
        return self.widgets

    def widget(self, wid: int) -> Widget | None:
        return self._widgets.get(wid)

    # -- wire values --------------------------------------------------------
    def to_wire(self, value: Any) -> Any:
        """Python values to JSON: widgets become ``{"__wid__": N}``."""
        wid = getattr(value, "wid", None)
        if isinstance(wid, int) and getattr(value, "session", None) is self:
            return {"__wid__": wid}
        if isinstance(value, list | tuple):
            return [self.to_wire(v) for v in value]
        if isinstance(value, dict):
            return {k: self.to_wire(v) for k, v in value.items()}
        return value

    def from_wire(self, value: Any) -> Any:
        """JSON to Python values: ``{"__wid__": N}`` becomes the widget (wrapped if new)."""
        if isinstance(value, list):
            return [self.from_wire(v) for v in value]
        if isinstance(value, dict):
            if p.is_ref(value):
                return self._ref(value)
            return {k: self.from_wire(v) for k, v in value.items()}
        return value

    def _ref(self, value: dict[str, Any]) -> Widget | None:
        wid = value["__wid__"]
        widget = self._widgets.get(wid)
        cls = value.get("__class__")
        if widget is None and isinstance(cls, str) and cls in widget_defs() and 0 < wid < MAX_WID:
            # Made by the browser itself (an MDISubWindow, a constructor's parts): wrap it,
            # and keep our next ids clear of it.
            widget = self._widgets[wid] = Widget(self, wid, cls)
            self.classes[wid] = cls
            self.state[wid] = {}
            self._skip_browser_ids(wid + 1)
        return widget

    def _skip_browser_ids(self, next_wid: Any) -> None:
        """Widgets get ids from ``next_wid`` on: pgwidgets-js hands out ids below it itself
        (the parts its constructors make), reported as ``next_wid`` in create answers."""
        if type(next_wid) is int and self._next_wid < next_wid < MAX_WID:
            self._next_wid = next_wid

    # -- receiving ----------------------------------------------------------
    def handle(self, conn: CallbackWebSocket, frame: str | bytes) -> None:
        """Handle one frame from ``conn``: never raises for bad input (logs it, maybe closes)."""
        if isinstance(frame, bytes):
            self._binary(conn, frame)
            return
        try:
            messages = p.decode(frame, self.max_json_depth)
        except p.ProtocolError as exc:
            self._bad_input(conn, exc.message)
            return
        for msg in messages:
            try:
                if isinstance(msg, p.ProtocolError):
                    raise msg
                self._dispatch(conn, msg)
            except p.ProtocolError as exc:
                self._bad_input(conn, exc.message)
            except UploadError as exc:
                self._bad_input(conn, f"upload: {exc}")

    def _bad_input(self, conn: CallbackWebSocket, message: str) -> None:
        count = self._bad[conn.id] = self._bad.get(conn.id, 0) + 1
        if count <= 5:
            log.warning("widgets session %s: bad input from %s: %s", self.id, conn.peer, message)
        if count >= MAX_BAD_MESSAGES:
            conn.close(CloseCode.POLICY_VIOLATION, "too many bad messages")

    def _dispatch(self, conn: CallbackWebSocket, msg: p.BrowserMessage) -> None:
        if isinstance(msg, p.Result):
            self._skip_browser_ids(msg.raw.get("next_wid"))
            self._answer(conn, msg.id, msg.value, None)
        elif isinstance(msg, p.Error):
            if msg.id is None:
                self._bad_input(conn, f"error without id: {msg.error}")
            else:
                self._answer(conn, msg.id, None, msg.error)
        elif isinstance(msg, p.Callback):
            self._callback(conn, msg)
        elif isinstance(msg, p.ChunkHeader):
            self._uploads[conn.id].header(msg)
        elif isinstance(msg, p.Viewport):
            self.viewport = (msg.width, msg.height)

    def _answer(self, conn: CallbackWebSocket, msg_id: int, value: Any, error: str | None) -> None:
        pending = self._pending.pop(msg_id, None)
        if pending is not None and conn.budget is not None:
            # An answer the session asked for: flow control (max_inflight_calls) bounds those,
            # so they cost the browser nothing of its receive budget.
            conn.budget.refund()
        if pending is None:
            if msg_id in self._recent_set:
                return  # another browser answered first
            if msg_id != 0:
                log.warning("widgets session %s: answer for unknown id %d", self.id, msg_id)
            return
        if len(self.browsers) > 1:
            if len(self._recent) == self._recent.maxlen:
                self._recent_set.discard(self._recent[0])
            self._recent.append(msg_id)
            self._recent_set.add(msg_id)
        if pending.future is not None:
            if not pending.future.done():
                if error is None:
                    pending.future.set_result(value)
                else:
                    pending.future.set_exception(CallError(error))
        elif error is not None:
            log.warning(
                "widgets session %s: browser error for %s: %s", self.id, pending.what, error
            )
        if self._slot_waiters:
            self._wake()

    def _callback(self, conn: CallbackWebSocket, msg: p.Callback) -> None:
        cls = self.classes.get(msg.wid)
        if cls is None:
            raise p.ProtocolError(
                p.BAD_MESSAGE, f"callback {msg.action!r} for unknown widget {msg.wid}"
            )
        tracker = self._uploads.get(conn.id)
        if tracker is not None and tracker.is_announcement(msg.args):
            progress_action = "drop-progress" if msg.action == "drop-end" else "progress"
            try:
                upload = tracker.announce(msg.wid, msg.action, msg.args[0])
            except UploadError as exc:
                log.warning("widgets session %s: upload refused: %s", self.id, exc)
                self._fire(
                    msg.wid,
                    progress_action,
                    [
                        {
                            "transfer_id": msg.args[0].get("transfer_id"),
                            "complete": False,
                            "error": str(exc),
                        }
                    ],
                )
                return
            if msg.action == "drop-end":
                self._fire(msg.wid, "drop-start", [upload.progress()])
            return
        args = self.from_wire(msg.args)
        for key, index in C.CALLBACK_STATE.get((cls, msg.action), ()):
            if index < len(args):
                value = args[index]
                self.state[msg.wid][key] = value
                wire = self.to_wire([value])
                self.journal.setter(msg.wid, key, f"set_{key}", wire)
                if len(self.browsers) > 1:  # keep the other browsers in step
                    self._send(
                        p.call(next(self._ids), msg.wid, f"set_{key}", wire, silent=True),
                        None,
                        f"sync set_{key}",
                        exclude=conn,
                    )
        self._fire(msg.wid, msg.action, args)

    def _fire(self, wid: int, action: str, args: list[Any]) -> None:
        widget = self._widgets.get(wid)
        for handler, pass_widget in tuple(self.handlers.get((wid, action), ())):
            call_args = (widget, *args) if pass_widget else tuple(args)
            self._enqueue(lambda h=handler, a=call_args: h(*a), f"{action} handler")

    def _binary(self, conn: CallbackWebSocket, data: bytes) -> None:
        tracker = self._uploads.get(conn.id)
        if tracker is None:
            return
        try:
            upload, _header = tracker.frame(data)
        except UploadError as exc:
            log.warning("widgets session %s: upload from %s dropped: %s", self.id, conn.peer, exc)
            if "without a binary-chunk header" in str(exc):
                conn.close(CloseCode.UNSUPPORTED_DATA, "binary frame without a binary-chunk header")
            return
        if upload is None:
            return
        progress_action = "drop-progress" if upload.action == "drop-end" else "progress"
        self._fire(upload.wid, progress_action, [upload.progress()])
        if upload.complete:
            self._fire(upload.wid, upload.action, [upload.result()])

    # -- tasks --------------------------------------------------------------
    def _enqueue(self, thunk: Callable[[], Any], what: str) -> None:
        if len(self._events) >= MAX_QUEUED_EVENTS:
            log.warning(
                "widgets session %s: %d events waiting, dropped %s",
                self.id,
                MAX_QUEUED_EVENTS,
                what,
            )
            return
        self._events.append((thunk, what))
        waiter = self._events_waiter
        if waiter is not None:
            self._events_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _worker(self) -> None:
        """Run handlers one at a time, in arrival order; a failing handler is logged."""
        events = self._events
        loop = asyncio.get_running_loop()
        while True:
            while not events:
                self._events_waiter = loop.create_future()
                await self._events_waiter
            thunk, what = events.popleft()
            await self._run_handler(thunk, (), what)

    async def _run_handler(self, fn: Callable[..., Any], args: tuple[Any, ...], what: str) -> None:
        try:
            result = fn(*args)
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except WidgetsError as exc:
            self.app.logger.warning(
                "widgets session %s: %s: %s: %s", self.id, what, type(exc).__name__, exc
            )
        except Exception:
            self.app.logger.exception("widgets session %s: %s failed", self.id, what)

    async def _sweeper(self) -> None:
        """Time out unanswered calls and stalled uploads."""
        tick = min(0.25, self.config.call_timeout / 4)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            expired = [(i, pe) for i, pe in self._pending.items() if pe.deadline <= now]
            for msg_id, pending in expired:
                del self._pending[msg_id]
                if pending.future is not None and not pending.future.done():
                    pending.future.set_exception(
                        CallTimeout(
                            f"no answer to {pending.what} within {self.config.call_timeout:g} s"
                        )
                    )
                else:
                    log.warning("widgets session %s: no answer to %s", self.id, pending.what)
            if expired:
                self._wake()
            for tracker in self._uploads.values():
                for upload in tracker.expired(self.config.upload_timeout, now):
                    log.warning(
                        "widgets session %s: upload %d timed out", self.id, upload.transfer_id
                    )
                    action = "drop-progress" if upload.action == "drop-end" else "progress"
                    self._fire(upload.wid, action, [{**upload.progress(), "error": "timed out"}])


def with_extra(handler: Handler, extra: tuple[Any, ...], extra_kwargs: dict[str, Any]) -> Handler:
    """``handler`` called with ``extra`` and ``extra_kwargs`` after the browser's arguments (as
    pgwidgets' ``on(action, handler, *extra_args, **extra_kwargs)``); ``handler`` itself when
    there are none. The wrapper's ``__wrapped__`` is ``handler``."""
    if not extra and not extra_kwargs:
        return handler

    @functools.wraps(handler)
    def call(*args: Any) -> Any:
        return handler(*args, *extra, **extra_kwargs)

    return call


class Listening:
    """What :meth:`Widget.on` returns: the handler is registered already; awaiting this (as
    pgwidgets' async API does, ``await w.on(...)``) gives the handler back."""

    __slots__ = ("handler",)

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    def __await__(self) -> Generator[Any, None, Handler]:
        return self.handler
        yield  # a generator: nothing to wait for


class Widget:
    """A widget of a session. Any method name is a call: ``await w.set_text("Hi")``.

    Each method takes the widget method's arguments, positional or by the names
    pgwidgets-js gives them (``await label.set_font(size=14)``), plus ``wait``
    (make it a round trip returning the browser's value) and ``timeout``
    (seconds, default ``widgets.call_timeout``). A keyword the method does not
    take raises ``TypeError``. See :class:`~roomhub.widgets.session.WidgetSession`
    for what a call sends.
    """

    __slots__ = ("cls", "session", "wid")

    def __init__(self, session: WidgetSession, wid: int, cls: str) -> None:
        self.session = session
        self.wid = wid
        self.cls = cls

    def __repr__(self) -> str:
        return f"<{self.cls} wid={self.wid} session={self.session.id}>"

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("_"):
            raise AttributeError(method)
        session, wid, cls = self.session, self.wid, self.cls
        key = C.state_getter(cls, method) if session.app.local_getters else None
        if key is not None:

            def get() -> Any:  # pgwidgets' async getters: the state, at once
                return session.state.get(wid, {}).get(key)

            get.__name__ = method
            return get

        async def call(
            *args: Any, wait: bool = False, timeout: float | None = None, **kwargs: Any
        ) -> Any:
            values = C.method_args(cls, method, args, kwargs)
            return await session.call(wid, method, values, wait=wait, timeout=timeout)

        call.__name__ = method
        return call

    def on(self, action: str, handler: Handler, *extra: Any, **extra_kwargs: Any) -> Listening:
        """Run ``handler(*args, *extra, **extra_kwargs)`` (sync or async) when the browser
        fires ``action``. Registered at once; the result may be awaited (pgwidgets' async API)."""
        self.session.listen(
            self.wid, action, with_extra(handler, extra, extra_kwargs), pass_widget=False
        )
        return Listening(handler)

    def add_callback(
        self, action: str, handler: Handler, *extra: Any, **extra_kwargs: Any
    ) -> Listening:
        """Like :meth:`on`, but ``handler(widget, *args, ...)`` gets the widget first (as pgwidgets)."""
        self.session.listen(
            self.wid, action, with_extra(handler, extra, extra_kwargs), pass_widget=True
        )
        return Listening(handler)

    def off(self, action: str, handler: Handler | None = None) -> None:
        """Remove ``handler`` (default: every handler) of ``action``."""
        self.session.unlisten(self.wid, action, handler)

    def batch(self) -> contextlib.AbstractAsyncContextManager[None]:
        """``async with widget.batch():`` sends the calls made inside as one ``batch`` message."""
        return self.session.batch()


class WidgetFactory:
    """``await factory.ClassName(*args, **options)`` creates a widget in the session."""

    __slots__ = ("session",)

    def __init__(self, session: WidgetSession) -> None:
        self.session = session

    def __getattr__(self, cls: str) -> Callable[..., Any]:
        if not cls[:1].isupper() or not cls.isidentifier():
            raise AttributeError(cls)
        session = self.session

        async def create(*args: Any, **kwargs: Any) -> Widget:
            return await session.create(cls, list(args), kwargs)

        create.__name__ = cls
        return create
