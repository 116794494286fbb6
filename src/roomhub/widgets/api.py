"""The public Python API: :class:`App` (the widget factory and :class:`Widget` a session makes
live with it, in :mod:`.session`; ``roomhub.widgets`` exports them all).

Async first::

    import roomhub.widgets

    app = roomhub.widgets.App()

    @app.on_connect
    async def setup(session):
        W = session.widgets
        top = await W.TopLevel(title="Hello")
        label = await W.Label("Not clicked")
        btn = await W.Button("Click")
        box = await W.VBox()
        await box.add_widget(label, 0)
        await box.add_widget(btn, 0)
        btn.on("activated", lambda: label.set_text("Clicked"))
        await top.set_widget(box)
        await top.show()

    if __name__ == "__main__":
        app.run()  # a hub with just the widgets face on http://127.0.0.1:8000/widgets/

:mod:`roomhub.widgets.sync` wraps the same objects for plain scripts.

pgwidgets-python programs run with their import changed (``pgwidgets.async_`` ->
``roomhub.widgets``): :class:`Application` is :class:`App` with pgwidgets'
getters, ``session.get_widgets()`` is ``session.widgets``, ``await app.run()``
serves in the running loop, methods take keywords by pgwidgets-js's parameter
names, and ``on``/``add_callback`` take extra handler arguments.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import os
from collections.abc import Callable
from typing import Any, Protocol

from ..core.rooms import RoomRegistry
from ..logs import setup_logging
from .session import WidgetSession

log = logging.getLogger("roomhub.widgets")

Handler = Callable[..., Any]


PORT_ENV = "ROOMHUB_WIDGETS_PORT"  # a standalone app's port when run() is given none
DEFAULT_PORT = 8000


STANDALONE_ENTRY_POINTS = "roomhub.standalone"
"""The entry point group naming the function that builds a standalone widgets hub's server: it
lives with process start-up (``roomhub.cli``), which composes the hub; the face does not import
the hub."""


def standalone_server() -> Callable[[App, Any], Any]:
    """``server(app, config) -> uvicorn.Server``: the ``widgets`` entry point of
    :data:`STANDALONE_ENTRY_POINTS`. Raises ``RuntimeError`` when the installed roomhub declares
    none (an installation older than its sources: reinstall it)."""
    found = importlib.metadata.entry_points(group=STANDALONE_ENTRY_POINTS, name="widgets")
    for entry in found:
        server: Callable[[App, Any], Any] = entry.load()
        return server
    raise RuntimeError(f"roomhub's installation declares no {STANDALONE_ENTRY_POINTS!r} entry point "
                       "'widgets': reinstall roomhub (pip install -e .)")


def standalone_address(app: App, host: str | None, port: int | None) -> tuple[str, int]:
    """Where a standalone app listens: ``host``/``port`` as given, else the app's
    ``host``/``http_port``, else ``127.0.0.1`` and ``$ROOMHUB_WIDGETS_PORT`` or 8000.

    Raises ``ValueError`` for a ``ROOMHUB_WIDGETS_PORT`` that is not a port number.
    """
    if port is None:
        port = app.http_port
    if port is None:
        value = os.environ.get(PORT_ENV)
        try:
            port = int(value) if value else DEFAULT_PORT
        except ValueError:
            raise ValueError(f"{PORT_ENV}={value!r} is not a port number") from None
        if not 0 <= port <= 65535:
            raise ValueError(f"{PORT_ENV}={value!r} is not a port number")
    return host or app.host or "127.0.0.1", port


class ServingFace(Protocol):
    """What an :class:`App` uses of the widgets face serving it (``WidgetsFace``)."""

    registry: RoomRegistry[WidgetSession]


class App:
    """A widgets app: handlers run per session. Serve it in a hub or standalone with :meth:`run`.

    ``options`` override the ``[widgets]`` configuration section in standalone
    mode (``max_sessions``, ``idle_timeout``, ``call_timeout``, ...). As in
    pgwidgets' ``Application``, ``logger`` receives the app's handler failures
    and ``host``/``http_port`` are where :meth:`run` listens by default (one
    port serves the page and the socket).
    """

    # pgwidgets' async getters: a widget's get_X() answers from state without await (see
    # Application).
    local_getters = False

    def __init__(
        self,
        *,
        logger: logging.Logger | None = None,
        host: str | None = None,
        http_port: int | None = None,
        **options: Any,
    ) -> None:
        self.options = options
        self.logger = logger or log  # where the app's handler failures are logged
        self.host = host  # standalone defaults (pgwidgets' Application arguments)
        self.http_port = http_port
        self.connect_handlers: list[Handler] = []
        self.disconnect_handlers: list[Handler] = []
        self.close_handlers: list[Handler] = []
        self.face: ServingFace | None = None

    def on_connect(self, handler: Handler) -> Handler:
        """``handler(session)`` builds a new session's UI (once per session, not per reload)."""
        self.connect_handlers.append(handler)
        return handler

    def on_disconnect(self, handler: Handler) -> Handler:
        """``handler(session)`` runs when a session's last browser leaves (it may come back)."""
        self.disconnect_handlers.append(handler)
        return handler

    def on_close(self, handler: Handler) -> Handler:
        """``handler(session)`` runs when a session ends (reaped, closed or hub stopping)."""
        self.close_handlers.append(handler)
        return handler

    async def shutdown(self, timeout: float) -> None:
        """Called once the face stopped and every session ended (hub stopping); a no-op here.

        Subclasses release what they hold within ``timeout`` seconds.
        """

    @property
    def sessions(self) -> list[WidgetSession]:
        """The live sessions (when served)."""
        return list(self.face.registry.rooms.values()) if self.face else []

    def hub_config(self, host: str = "127.0.0.1", port: int = 8000, **server: Any) -> Any:
        """A hub configuration with just the widgets face (and this app's options)."""
        from ..config import parse_config

        return parse_config(
            {"server": {"host": host, "port": port, **server}, "widgets": dict(self.options)},
            "<widgets app>",
        )

    def make_server(self, host: str = "127.0.0.1", port: int = 8000, **server: Any) -> Any:
        """A ``uvicorn.Server`` for a hub with just the widgets face serving this app.

        ``server`` holds ``[server]`` options (``data_dir``, ``log_level``...).
        Nothing is bound until the server's ``serve()`` runs. Raises
        :class:`~roomhub.config.ConfigError` for bad options.
        """
        config = self.hub_config(host, port, **server)
        return standalone_server()(self, config)

    async def serve(self, host: str | None = None, port: int | None = None, **server: Any) -> None:
        """Serve this app standalone in the running loop until cancelled (or SIGINT/SIGTERM).

        The address is as for :meth:`run`.
        """
        host, port = standalone_address(self, host, port)
        srv = self.make_server(host, port, **server)
        print(f"roomhub widgets: http://{host}:{port}/widgets/", flush=True)
        await srv.serve()

    def run(self, host: str | None = None, port: int | None = None, **server: Any) -> Any:
        """``python myapp.py``: start a hub with just the widgets face and serve until stopped.

        Listens on ``host`` (default the app's ``host``, else 127.0.0.1) and ``port``
        (default the app's ``http_port``, else ``$ROOMHUB_WIDGETS_PORT``, else 8000).
        Called inside a running event loop (pgwidgets' ``await app.run()``), it returns
        the coroutine of :meth:`serve` instead of blocking.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            return self.serve(host, port, **server)
        setup_logging(server.get("log_level", "info"))
        host, port = standalone_address(self, host, port)
        srv = self.make_server(host, port, **server)
        print(f"roomhub widgets: http://{host}:{port}/widgets/", flush=True)
        # The event loop the hub's command line runs on (uvicorn's choice: uvloop when installed).
        with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(
            loop_factory=srv.config.get_loop_factory()
        ) as runner:
            runner.run(srv.serve())


class Application(App):
    """pgwidgets' ``Application`` (``pgwidgets.async_``): this :class:`App`, with
    pgwidgets' getters. ``label.get_text()`` (a parameterless ``get_X`` of a class
    with ``set_X``) answers from the state Python knows at once, without ``await``;
    what only the browser knows (``get_selected``...) is still awaited. So that
    this state stays current, each widget listens from its creation to the
    callbacks that report what the user changes (a ComboBox's ``activated``...),
    as pgwidgets does.
    """

    local_getters = True
