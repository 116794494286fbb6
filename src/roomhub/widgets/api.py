"""The public Python API: :class:`App`, the widget factory and :class:`Widget`.

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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import WidgetsFace
    from .session import WidgetSession

log = logging.getLogger("roomhub.widgets")

Handler = Callable[..., Any]


class Widget:
    """A widget of a session. Any method name is a call: ``await w.set_text("Hi")``.

    Each method takes the widget method's positional arguments plus ``wait``
    (make it a round trip returning the browser's value) and ``timeout``
    (seconds, default ``widgets.call_timeout``). See
    :class:`~roomhub.widgets.session.WidgetSession` for what a call sends.
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
        session, wid = self.session, self.wid

        async def call(*args: Any, wait: bool = False, timeout: float | None = None) -> Any:
            return await session.call(wid, method, list(args), wait=wait, timeout=timeout)

        call.__name__ = method
        return call

    def on(self, action: str, handler: Handler) -> Handler:
        """Run ``handler(*args)`` (sync or async) when the browser fires ``action``."""
        self.session.listen(self.wid, action, handler, pass_widget=False)
        return handler

    def add_callback(self, action: str, handler: Handler) -> Handler:
        """Like :meth:`on`, but ``handler(widget, *args)`` gets the widget first (as pgwidgets)."""
        self.session.listen(self.wid, action, handler, pass_widget=True)
        return handler

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


class App:
    """A widgets app: handlers run per session. Serve it in a hub or standalone with :meth:`run`.

    ``options`` override the ``[widgets]`` configuration section in standalone
    mode (``max_sessions``, ``idle_timeout``, ``call_timeout``, ...).
    """

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.connect_handlers: list[Handler] = []
        self.disconnect_handlers: list[Handler] = []
        self.close_handlers: list[Handler] = []
        self.face: WidgetsFace | None = None

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
        import uvicorn

        from ..app import server_config
        from ..hub import Hub

        config = self.hub_config(host, port, **server)
        hub = Hub(config)
        face = hub.face("widgets")
        face.use_app(self)
        return uvicorn.Server(server_config(hub))

    async def serve(self, host: str = "127.0.0.1", port: int = 8000, **server: Any) -> None:
        """Serve this app standalone in the running loop until cancelled (or SIGINT/SIGTERM)."""
        srv = self.make_server(host, port, **server)
        log.info("widgets app on http://%s:%d/widgets/", srv.config.host, srv.config.port)
        await srv.serve()

    def run(self, host: str = "127.0.0.1", port: int = 8000, **server: Any) -> None:
        """``python myapp.py``: start a hub with just the widgets face and serve until stopped."""
        from ..cli import setup_logging

        setup_logging(server.get("log_level", "info"))
        srv = self.make_server(host, port, **server)
        print(f"roomhub widgets: http://{host}:{port}/widgets/", flush=True)
        # The event loop the hub's command line runs on (uvicorn's choice: uvloop when installed).
        with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(
            loop_factory=srv.config.get_loop_factory()
        ) as runner:
            runner.run(srv.serve())
