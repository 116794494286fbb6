"""A thin sync wrapper of the widgets API for plain scripts (no ``async``/``await``)::

    from roomhub.widgets.sync import App

    app = App()

    @app.on_connect
    def setup(session):
        W = session.widgets
        top = W.TopLevel(title="Hello")
        label = W.Label("Not clicked")
        btn = W.Button("Click")
        box = W.VBox()
        box.add_widget(label, 0)
        box.add_widget(btn, 0)
        btn.on("activated", lambda: label.set_text("Clicked"))
        top.set_widget(box)
        top.show()

    if __name__ == "__main__":
        app.run(port=8000)  # until Ctrl-C / SIGTERM; or app.start(...) ... app.stop()

How it works: the hub and its event loop run in a background thread
(:meth:`App.start`); :class:`Session`, :class:`WidgetFactory` and
:class:`Widget` are proxies of the async objects of :mod:`roomhub.widgets.api`
that run each call on that loop (``asyncio.run_coroutine_threadsafe``) and
block the calling thread until it is done. Everything the async call does
applies unchanged: setters return once recorded and sent, getters are
answered from state or are a round trip bounded by ``call_timeout``, and the
same exceptions are raised (:class:`CallTimeout`, :class:`NoBrowser`,
:class:`CallError`, :class:`SessionClosed`).

Handlers registered here (``on_connect``, ``on_disconnect``, ``on_close``,
``widget.on``/``add_callback``) are plain functions run in worker threads,
never on the loop's thread, so they may block on proxy calls. As with the
async API, a session's handlers run one at a time, in arrival order. A proxy
call made on the loop's thread itself would deadlock, so it raises
:class:`LoopThreadError` instead.

A sync :class:`App` is a :class:`roomhub.widgets.App`, so a hub can also
serve it as its configured app (``[widgets] app = "myapp.py:app"``).

pgwidgets-python's sync programs run with their import changed
(``pgwidgets.sync`` -> ``roomhub.widgets.sync``): ``Application`` is
:class:`App`, ``session.get_widgets()`` is ``session.widgets``.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import functools
import inspect
import logging
import signal
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

from ..logs import setup_logging
from . import api
from . import session as session_mod
from .session import (
    CallError,
    CallTimeout,
    NoBrowser,
    SessionClosed,
    WidgetsError,
    WidgetSession,
)

log = logging.getLogger("roomhub.widgets")

T = TypeVar("T")
Handler = Callable[..., Any]

LOOP_SLACK = 5.0  # seconds a sync call waits beyond twice its call timeout before giving up


class LoopThreadError(RuntimeError):
    """A blocking sync call was made on the hub's event-loop thread (it would deadlock)."""


class _Bridge:
    """Runs coroutines on the hub's loop for other threads; runs plain handlers in worker threads.

    ``threads`` bounds the worker threads (handlers of different sessions run
    in parallel up to that number; the others wait their turn).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, threads: int) -> None:
        self.loop = loop
        self.executor = concurrent.futures.ThreadPoolExecutor(
            threads, thread_name_prefix="roomhub-widgets-handler", initializer=_mark_handler_thread
        )
        self._lock = threading.Lock()
        self._waiting: set[concurrent.futures.Future[Any]] = set()
        self.active: set[concurrent.futures.Future[Any]] = set()  # handlers running or queued
        self.closed = False

    def run(self, make: Callable[[], Coroutine[Any, Any, T]], timeout: float) -> T:
        """Run the coroutine ``make()`` on the loop and return its result (or raise its error).

        ``timeout`` (seconds) only guards against a loop that no longer runs:
        past it the call is cancelled and :class:`CallTimeout` is raised.
        Raises :class:`LoopThreadError` on the loop's thread and
        :class:`SessionClosed` once the hub has stopped.
        """
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            raise LoopThreadError(
                "a roomhub.widgets.sync call was made on the hub's event-loop thread, where "
                "blocking would deadlock; use the async API (roomhub.widgets) in async code"
            )
        with self._lock:
            if self.closed or self.loop.is_closed():
                raise SessionClosed("the widgets hub has stopped")
            coro = make()
            try:
                future = asyncio.run_coroutine_threadsafe(coro, self.loop)
            except RuntimeError:  # the loop closed just now
                coro.close()
                raise SessionClosed("the widgets hub has stopped") from None
            self._waiting.add(future)
        try:
            return future.result(timeout)
        except concurrent.futures.CancelledError:
            raise SessionClosed("the widgets hub stopped during the call") from None
        except TimeoutError:
            if future.done():
                raise  # the call itself raised TimeoutError
            future.cancel()
            raise CallTimeout(f"the hub's event loop did not finish the call in {timeout:g} s") from None
        finally:
            with self._lock:
                self._waiting.discard(future)

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = 30.0) -> T:
        """Run the plain function ``fn(*args)`` on the loop's thread (for loop-owned state)."""

        async def on_loop() -> T:
            return fn(*args)

        return self.run(on_loop, timeout)

    async def in_thread(self, fn: Callable[[], Any]) -> None:
        """Run plain ``fn()`` in a worker thread and wait for it (on the loop)."""
        future = self.executor.submit(fn)
        self.active.add(future)
        future.add_done_callback(self.active.discard)
        await asyncio.wrap_future(future)

    async def drain(self, timeout: float) -> None:
        """Let the handlers still running finish (up to ``timeout`` s), then end the threads."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        active = [asyncio.wrap_future(f) for f in tuple(self.active)]
        if active:
            _, running = await asyncio.wait(active, timeout=timeout)
            if running:
                log.warning("%d widgets handlers still running after %g s", len(running), timeout)

    def close(self) -> None:
        """Refuse new calls; calls still waiting raise :class:`SessionClosed`."""
        with self._lock:
            self.closed = True
            waiting = list(self._waiting)
        for future in waiting:
            future.cancel()


_local = threading.local()


def _mark_handler_thread() -> None:
    _local.handler_thread = True


def _in_handler_thread() -> bool:
    return getattr(_local, "handler_thread", False)


def _check_plain(handler: Handler) -> None:
    if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004
    ):
        raise TypeError(
            f"{getattr(handler, '__name__', handler)!r} is async: roomhub.widgets.sync takes "
            "plain functions (use roomhub.widgets.App for async handlers)"
        )


class _InThread:
    """The async handler given to the session: runs plain ``fn`` in a worker thread.

    Arguments are converted on the loop (sessions and widgets become their
    sync proxies) before ``fn`` runs; the session's worker task waits for it,
    so a session's handlers still run one at a time.
    """

    __slots__ = ("app", "fn")

    def __init__(self, app: App, fn: Handler) -> None:
        self.app = app
        self.fn = fn

    async def __call__(self, *args: Any) -> None:
        bridge = self.app._bridge_for(asyncio.get_running_loop())
        await bridge.in_thread(functools.partial(self.fn, *_wrap(args, self.app)))


def _wrap(value: Any, app: App) -> Any:
    """Async API values to sync ones (widgets, sessions; inside lists, tuples and dicts)."""
    if isinstance(value, session_mod.Widget):
        return Widget(value, app)
    if isinstance(value, WidgetSession):
        return Session(value, app)
    if isinstance(value, list):
        return [_wrap(v, app) for v in value]
    if isinstance(value, tuple):
        return tuple(_wrap(v, app) for v in value)
    if isinstance(value, dict):
        return {k: _wrap(v, app) for k, v in value.items()}
    return value


def _unwrap(value: Any) -> Any:
    """Sync proxies back to the async objects (for call arguments)."""
    if isinstance(value, Widget):
        return value.widget
    if isinstance(value, Session):
        return value.session
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_unwrap(v) for v in value)
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    return value


def _guard(session: WidgetSession, timeout: float | None) -> float:
    """How long a sync caller waits for the loop (seconds): the call's own bound, twice, plus slack.

    A call may first wait for flow control (answers that time out after
    ``call_timeout``) and then for its own answer, hence twice.
    """
    return 2 * (timeout if timeout is not None else session.config.call_timeout) + LOOP_SLACK


class Widget:
    """Sync proxy of :class:`roomhub.widgets.session.Widget`: ``label.set_text("Hi")`` blocks until done.

    Each method takes the widget method's positional arguments plus ``wait``
    (a round trip returning the browser's value) and ``timeout`` (seconds,
    default ``widgets.call_timeout``). Raises what the async call raises:
    :class:`CallTimeout`, :class:`NoBrowser`, :class:`CallError`,
    :class:`SessionClosed`, :class:`WidgetsError` (a destroyed widget), and
    :class:`LoopThreadError` on the hub's loop thread.
    """

    __slots__ = ("app", "widget")

    def __init__(self, widget: session_mod.Widget, app: App) -> None:
        self.widget = widget
        self.app = app

    @property
    def wid(self) -> int:
        return self.widget.wid

    @property
    def cls(self) -> str:
        return self.widget.cls

    @property
    def session(self) -> Session:
        return Session(self.widget.session, self.app)

    def __repr__(self) -> str:
        return f"<sync {self.widget!r}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Widget) and other.widget is self.widget

    def __hash__(self) -> int:
        return hash(self.widget)

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("_"):
            raise AttributeError(method)
        widget, app = self.widget, self.app
        bound = getattr(widget, method)

        def call(
            *args: Any, wait: bool = False, timeout: float | None = None, **kwargs: Any
        ) -> Any:
            value = app._bridge_now().run(
                lambda: bound(*_unwrap(args), wait=wait, timeout=timeout, **_unwrap(kwargs)),
                _guard(widget.session, timeout),
            )
            return _wrap(value, app)

        call.__name__ = method
        return call

    def on(self, action: str, handler: Handler, *extra: Any, **extra_kwargs: Any) -> Handler:
        """Run plain ``handler(*args, *extra, **extra_kwargs)`` in a worker thread when the
        browser fires ``action``.

        Raises ``TypeError`` for an async handler.
        """
        _check_plain(handler)
        in_thread = _InThread(self.app, session_mod.with_extra(handler, extra, extra_kwargs))
        self.app._bridge_now().call(self.widget.on, action, in_thread)
        return handler

    def add_callback(self, action: str, handler: Handler, *extra: Any, **extra_kwargs: Any) -> Handler:
        """Like :meth:`on`, but ``handler(widget, *args, ...)`` gets the widget first (as pgwidgets)."""
        _check_plain(handler)
        in_thread = _InThread(self.app, session_mod.with_extra(handler, extra, extra_kwargs))
        self.app._bridge_now().call(self.widget.add_callback, action, in_thread)
        return handler

    def off(self, action: str, handler: Handler | None = None) -> None:
        """Remove ``handler`` (default: every handler) of ``action``."""
        widget = self.widget

        def remove() -> None:
            if handler is None:
                widget.off(action)
                return
            for registered, _ in tuple(widget.session.handlers.get((widget.wid, action), ())):
                fn = registered.fn if isinstance(registered, _InThread) else None
                if fn is not None and getattr(fn, "__wrapped__", fn) is handler:
                    widget.off(action, registered)

        self.app._bridge_now().call(remove)

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """``with widget.batch():`` sends the calls made inside as one ``batch`` message."""
        return self.session.batch()


class WidgetFactory:
    """``factory.ClassName(*args, **options)`` creates a widget and returns its :class:`Widget`.

    Raises :class:`SessionClosed` once the session has ended.
    """

    __slots__ = ("app", "session")

    def __init__(self, session: WidgetSession, app: App) -> None:
        self.session = session
        self.app = app

    def __getattr__(self, cls: str) -> Callable[..., Widget]:
        create = getattr(self.session.widgets, cls)  # AttributeError for non-class names
        session, app = self.session, self.app

        def make(*args: Any, **kwargs: Any) -> Widget:
            widget = app._bridge_now().run(
                lambda: create(*_unwrap(args), **_unwrap(kwargs)), _guard(session, None)
            )
            return Widget(widget, app)

        make.__name__ = cls
        return make


class Session:
    """Sync proxy of a :class:`~roomhub.widgets.session.WidgetSession` (one browser tab's UI)."""

    __slots__ = ("app", "session")

    def __init__(self, session: WidgetSession, app: App) -> None:
        self.session = session
        self.app = app

    @property
    def id(self) -> str:
        return self.session.id

    @property
    def token(self) -> str | None:
        return self.session.token

    @property
    def data(self) -> dict[str, Any]:
        """The session's free-for-the-app dict (shared with async code, not locked)."""
        return self.session.data

    @property
    def viewport(self) -> tuple[int, int] | None:
        """The browser's last reported ``(width, height)`` in CSS pixels."""
        return self.session.viewport

    @property
    def closed(self) -> bool:
        return self.session.closed

    @property
    def browsers(self) -> int:
        """How many browsers show this session now."""
        return len(self.session.browsers)

    @property
    def widgets(self) -> WidgetFactory:
        """The widget factory: ``session.widgets.Button("OK")``."""
        return WidgetFactory(self.session, self.app)

    def get_widgets(self) -> WidgetFactory:
        """The widget factory, as pgwidgets names it: ``W = session.get_widgets()``."""
        return self.widgets

    def widget(self, wid: int) -> Widget | None:
        """The widget numbered ``wid``, or None."""
        widget = self.app._bridge_now().call(self.session.widget, wid)
        return None if widget is None else Widget(widget, self.app)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """``with session.batch():`` sends the calls made inside as one ``batch`` message."""
        bridge, manager = self.app._bridge_now(), self.session.batch()
        bridge.run(manager.__aenter__, _guard(self.session, None))
        try:
            yield
        finally:
            bridge.run(lambda: manager.__aexit__(None, None, None), _guard(self.session, None))

    def close(self) -> None:
        """End this session now: close its browsers (1000) and free its slot."""
        self.app._bridge_now().run(self.session.close, _guard(self.session, None))

    def __repr__(self) -> str:
        return f"<sync session {self.session.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Session) and other.session is self.session

    def __hash__(self) -> int:
        return hash(self.session)


class App(api.App):
    """A widgets app whose handlers are plain functions run in worker threads.

    ``handler_threads`` bounds the worker threads (handlers of different
    sessions run in parallel up to that number). ``options`` override the
    ``[widgets]`` configuration section (``max_sessions``, ``idle_timeout``,
    ``call_timeout``...), as for :class:`roomhub.widgets.App`.
    """

    def __init__(self, *, handler_threads: int = 32, **options: Any) -> None:
        super().__init__(**options)
        self.handler_threads = handler_threads
        self._bridge: _Bridge | None = None
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._failure: BaseException | None = None

    # -- handlers -----------------------------------------------------------
    def on_connect(self, handler: Handler) -> Handler:
        """``handler(session)`` builds a new session's UI (a :class:`Session`; once per session)."""
        _check_plain(handler)
        super().on_connect(_InThread(self, handler))
        return handler

    def on_disconnect(self, handler: Handler) -> Handler:
        """``handler(session)`` runs when a session's last browser leaves (it may come back)."""
        _check_plain(handler)
        super().on_disconnect(_InThread(self, handler))
        return handler

    def on_close(self, handler: Handler) -> Handler:
        """``handler(session)`` runs when a session ends (reaped, closed or hub stopping)."""
        _check_plain(handler)
        super().on_close(_InThread(self, handler))
        return handler

    @property
    def sessions(self) -> list[Session]:  # type: ignore[override]
        """The live sessions as :class:`Session` proxies (empty when not served)."""
        face = self.face
        if face is None or self._bridge is None:
            return []
        rooms = self._bridge.call(lambda: list(face.registry.rooms.values()))
        return [Session(s, self) for s in rooms]

    # -- the loop -----------------------------------------------------------
    def _bridge_for(self, loop: asyncio.AbstractEventLoop) -> _Bridge:
        """The bridge of ``loop`` (made on first use, as when a hub serves this app)."""
        bridge = self._bridge
        if bridge is None or bridge.loop is not loop or bridge.closed:
            bridge = self._bridge = _Bridge(loop, self.handler_threads)
        return bridge

    async def shutdown(self, timeout: float) -> None:
        """The hub is stopping and every session ended: wait up to ``timeout`` s for the
        handlers still running, then refuse sync calls (:class:`SessionClosed`)."""
        bridge = self._bridge
        if bridge is not None and bridge.loop is asyncio.get_running_loop():
            bridge.close()
            await bridge.drain(timeout)

    def _bridge_now(self) -> _Bridge:
        if self._bridge is None:
            raise SessionClosed("the widgets app is not being served")
        return self._bridge

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The hub's event loop while served (for ``asyncio.run_coroutine_threadsafe``), or None."""
        return None if self._bridge is None else self._bridge.loop

    @property
    def port(self) -> int | None:
        """The port the started hub listens on (useful with ``port=0``), or None when stopped."""
        server = self._server
        sockets = server.servers[0].sockets if server is not None and server.servers else ()
        return int(sockets[0].getsockname()[1]) if sockets else None

    @property
    def url(self) -> str | None:
        """``http://host:port/widgets/`` of the started hub, or None."""
        port = self.port
        if port is None:
            return None
        return f"http://{self._server.config.host}:{port}/widgets/"

    def start(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        timeout: float = 30.0,
        **server: Any,
    ) -> str:
        """Serve this app from a background thread; return its URL once the hub is listening.

        ``server`` holds ``[server]`` options (``data_dir``, ``log_level``...);
        ``host`` and ``port`` default as for :meth:`roomhub.widgets.App.run`
        (``$ROOMHUB_WIDGETS_PORT``, else 8000); ``port=0`` picks a free port
        (see :attr:`port`). Waits up to
        ``timeout`` seconds. Raises :class:`~roomhub.config.ConfigError` for
        bad options and ``RuntimeError`` if the app is already started or the
        hub cannot start (the port is taken...). Stop it with :meth:`stop`
        (also done at interpreter exit).
        """
        if self._thread is not None and not self._thread.is_alive():
            self.stop()  # stopped from a handler: collect it
        if self._thread is not None:
            raise RuntimeError("this widgets app is already started")
        host, port = api.standalone_address(self, host, port)
        srv = self.make_server(host, port, **server)
        ready = threading.Event()
        self._server, self._failure = srv, None
        thread = threading.Thread(
            target=self._serve_in_thread, args=(srv, ready), name="roomhub-widgets-hub", daemon=True
        )
        self._thread = thread
        atexit.register(self.stop)
        thread.start()
        if not ready.wait(timeout) or not srv.started:
            failure = self._failure
            self.stop()
            reason = "timed out" if failure is None else f"{type(failure).__name__}: {failure}"
            raise RuntimeError(f"the widgets hub did not start on {host}:{port} ({reason}; see the log)")
        log.info("widgets app on %s", self.url)
        return str(self.url)

    def _serve_in_thread(self, srv: Any, ready: threading.Event) -> None:
        bridge: _Bridge | None = None
        try:
            with asyncio.Runner(loop_factory=srv.config.get_loop_factory()) as runner:
                bridge = self._bridge_for(runner.get_loop())
                runner.run(self._serve_until_stopped(srv, ready))
        except BaseException as exc:  # uvicorn exits with SystemExit when it cannot bind
            self._failure = exc
            if srv.started:
                log.exception("the widgets hub stopped with an error")
        finally:
            if bridge is not None:
                bridge.close()
            ready.set()

    async def _serve_until_stopped(self, srv: Any, ready: threading.Event) -> None:
        task = asyncio.create_task(srv.serve())
        while not srv.started and not task.done():  # noqa: ASYNC110 (uvicorn has no start-up event)
            await asyncio.sleep(0.01)
        ready.set()
        await task

    def stop(self, timeout: float = 30.0) -> None:
        """Shut the hub down cleanly (sessions end, ``on_close`` handlers run) and wait for it.

        Waits up to ``timeout`` seconds for the hub (then forces it) and for
        handlers still running. Called from a handler, it only asks the hub to
        stop (a handler cannot wait for itself). Does nothing if not started.
        Raises :class:`LoopThreadError` on the hub's loop thread.
        """
        thread, srv, bridge = self._thread, self._server, self._bridge
        if thread is None:
            return
        if threading.current_thread() is thread:
            raise LoopThreadError("stop() cannot wait for the hub from the hub's own loop thread")
        srv.should_exit = True
        if _in_handler_thread():
            return
        thread.join(timeout)
        if thread.is_alive():
            log.warning("the widgets hub did not stop within %g s: forcing it", timeout)
            srv.force_exit = True
            thread.join(timeout)
        if bridge is not None:
            bridge.close()
            bridge.executor.shutdown(wait=not bridge.active)  # a stuck handler is left behind
        self._thread = None
        atexit.unregister(self.stop)
        if thread.is_alive():
            raise RuntimeError("the widgets hub thread did not stop")

    def run(self, host: str | None = None, port: int | None = None, **server: Any) -> None:
        """``python myapp.py``: serve until Ctrl-C or SIGTERM, then shut the hub down cleanly.

        ``host`` and ``port`` default as for :meth:`start`.

        A second signal while stopping skips waiting for open connections.
        Also returns when a handler calls :meth:`stop`. Raises like :meth:`start`.
        """
        setup_logging(server.get("log_level", "info"))
        stopping = threading.Event()

        def on_signal(signum: int, frame: Any) -> None:
            if stopping.is_set() and self._server is not None:
                self._server.force_exit = True
            stopping.set()

        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, on_signal)
        try:
            url = self.start(host, port, **server)
            print(f"roomhub widgets: {url}", flush=True)
            thread = self._thread
            while thread is not None and thread.is_alive() and not stopping.wait(0.5):
                pass
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)


# pgwidgets' name (``pgwidgets.sync``): the same object.
Application = App

__all__ = [
    "App",
    "Application",
    "CallError",
    "CallTimeout",
    "LoopThreadError",
    "NoBrowser",
    "Session",
    "SessionClosed",
    "Widget",
    "WidgetFactory",
    "WidgetsError",
]
