"""The widgets face: a browser UI built and driven from Python (pgwidgets' protocol).

``/widgets/`` serves the renderer (pgwidgets-js, see :mod:`.renderer`), ``/widgets/ws``
its socket. The app is ``[widgets] app = "module:attribute"`` in the hub's
configuration, or an :class:`App` run standalone with ``App.run()``.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import secrets
import sys
from pathlib import Path
from typing import Any

from starlette.routing import BaseRoute

from ..core.context import FaceContext
from ..core.errors import CloseCode, HubError, RoomError
from ..core.face import Face
from ..core.rooms import RoomRegistry, validate_room_name
from ..core.sessions import Session as Credentials
from ..core.sessions import SessionStore
from ..transport.callback_websocket import CallbackWebSocket, SocketEndpoint
from . import renderer
from .api import App, Application
from .config import WidgetsConfig
from .endpoint import WidgetsSocket, widgets_routes
from .session import (
    CallError,
    CallTimeout,
    NoBrowser,
    SessionClosed,
    Widget,
    WidgetFactory,
    WidgetsError,
    WidgetSession,
)

log = logging.getLogger("roomhub.widgets")

# pgwidgets' name (``pgwidgets.async_``) of a session: the same object.
Session = WidgetSession


def load_app(spec: str) -> App:
    """Import ``"package.module:attr"`` or ``"/path/file.py:attr"``.

    Raises ``ValueError`` saying why it cannot be used.
    """
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise ValueError(f"widgets.app {spec!r} must look like 'module:attribute'")
    try:
        if target.endswith(".py"):
            path = Path(target)
            name = f"roomhub_widgets_app_{path.stem}"
            module_spec = importlib.util.spec_from_file_location(name, path)
            if module_spec is None or module_spec.loader is None:
                raise ValueError(f"cannot load {path}")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except (ImportError, OSError, SyntaxError) as exc:
        raise ValueError(f"widgets.app {spec!r}: cannot import {target}: {exc}") from None
    app = getattr(module, attr, None)
    if not isinstance(app, App):
        raise ValueError(f"widgets.app {spec!r}: {attr} is not a roomhub.widgets.App")
    return app


def _placeholder_app() -> App:
    app = App()

    @app.on_connect
    async def setup(session: WidgetSession) -> None:
        page = await session.widgets.Page()
        await page.set_widget(
            await session.widgets.Label("No widgets app is configured on this hub.")
        )
        await page.show()

    return app


class WidgetsFace(Face):
    """Serves the widgets page and socket; its sessions are rooms of namespace ``widgets``."""

    name = "widgets"

    def links(self) -> list[tuple[str, str]]:
        return [(self.config.title, "/widgets/")]

    def __init__(self, context: FaceContext) -> None:
        super().__init__(context)
        self.config: WidgetsConfig = context.config.widgets or WidgetsConfig()
        self.registry: RoomRegistry[WidgetSession] = RoomRegistry(
            "widgets",
            lambda name: WidgetSession(
                name, self.app, self.config, context.bus, context.config.server.limits.max_json_depth
            ),
            grace_period=None,  # a session's room lives until its session is reaped
            max_rooms=self.config.max_sessions or sys.maxsize,
            max_clients=self.config.max_browsers_per_session,
            bus=context.bus,
        )
        # Ids and resume tokens, and the reaping of sessions no browser came back to within
        # idle_timeout seconds: the core's session store, as for actions (max_sessions is the
        # registry's room limit, enforced by ending the oldest unattended session).
        self.sessions = SessionStore(self.config.idle_timeout, sys.maxsize,
                                     new_id=lambda: secrets.token_hex(8))
        self.sessions.on_reap(self._reaped)
        self._ending: set[asyncio.Task[bool]] = set()
        self.socket = WidgetsSocket(self)
        try:
            renderer.static_dir()
            renderer.widget_defs()
        except renderer.RendererMissing as exc:
            raise HubError(str(exc)) from None
        app = _placeholder_app()
        if self.config.app:
            try:
                app = load_app(self.config.app)
            except ValueError as exc:
                raise HubError(str(exc)) from None
        self.app = app
        self.use_app(app)

    def use_app(self, app: App) -> None:
        """Serve ``app`` (standalone mode sets it before start-up)."""
        self.app = app
        app.face = self

    def routes(self) -> list[BaseRoute]:
        return widgets_routes(self)

    def socket_endpoints(self) -> list[SocketEndpoint]:
        """``/widgets/ws`` (the page stays with the router)."""
        return [self.socket]

    def registries(self) -> list[RoomRegistry[Any]]:
        return [self.registry]

    async def open_session(
        self, conn: CallbackWebSocket, sid: str | None, token: str | None
    ) -> WidgetSession:
        """Attach ``conn`` to session ``sid`` if ``token`` matches, or to a new session.

        A new session at ``max_sessions`` takes the place of the session whose browsers
        left longest ago (it ends as if reaped, and its token no longer resumes it).
        Raises :class:`RoomError`: 4001 for a wrong token, 1013 when ``max_sessions``
        sessions all have a browser.
        """
        if sid is not None:
            try:
                validate_room_name(sid, 64)
            except ValueError:
                sid = None
        credentials = self.sessions.session(sid) if sid else None
        if credentials is not None:
            if not isinstance(token, str) or self.sessions.resume(credentials.id, token) is None:
                raise RoomError(CloseCode.UNAUTHORIZED, "Invalid session credentials")
        else:
            limit = self.config.max_sessions
            while limit is not None and len(self.registry.rooms) >= limit:
                await self._end_oldest_unattended(limit)
            credentials = self.sessions.create()
        try:
            session = await self.registry.join(credentials.id, conn)
        except RoomError:
            self._unattended(credentials)
            raise
        session.token = credentials.token
        session.attach(conn)
        return session

    async def leave_session(self, session: WidgetSession, conn: CallbackWebSocket) -> None:
        """``conn`` left ``session``; with no browser left, its idle timeout starts."""
        session.detach(conn)
        await self.registry.leave(session, conn)
        self._unattended(self.sessions.session(session.id))

    def _unattended(self, credentials: Credentials | None) -> None:
        """Start the idle timeout of a session no browser shows (a new one that never got a
        room is dropped at once)."""
        if credentials is None:
            return
        room = self.registry.get(credentials.id)
        if room is None:
            self.sessions.drop(credentials)
        elif not room.members:
            self.sessions.detach(credentials)

    def _reaped(self, credentials: Credentials) -> None:
        """The session store ended a session (idle timeout, shutdown): its room ends too."""
        if self.registry.get(credentials.id) is None or self.registry.closed:
            return
        task = asyncio.ensure_future(self.registry.drop(credentials.id, reason="session ended"))
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)

    async def _end_oldest_unattended(self, limit: int) -> None:
        """End the session left by its browsers longest ago, to make room for a new one.

        Sessions kept for a browser that may come back must not lock out visitors who are
        here: only sessions with a browser count against ``limit``. Raises
        :class:`RoomError` (1013) when every session has one.
        """
        unattended = [s for s in self.registry.rooms.values() if not s.members]
        if not unattended:
            raise RoomError(CloseCode.TRY_AGAIN_LATER, f"session limit reached ({limit})")
        oldest = min(unattended, key=lambda s: s.left_at)
        log.info("widgets: session %s ended to make room (limit %d)", oldest.id, limit)
        await self.registry.drop(oldest.name, reason="session limit reached")
        credentials = self.sessions.session(oldest.name)
        if credentials is not None:  # its token no longer resumes it
            self.sessions.drop(credentials)

    async def stop(self) -> None:
        await self.registry.close(self.context.config.server.shutdown_timeout)
        self.sessions.close()
        if self._ending:
            await asyncio.wait(self._ending, timeout=self.context.config.server.shutdown_timeout)
        await self.app.shutdown(self.context.config.server.shutdown_timeout)


__all__ = [
    "App",
    "Application",
    "CallError",
    "CallTimeout",
    "NoBrowser",
    "Session",
    "SessionClosed",
    "Widget",
    "WidgetFactory",
    "WidgetSession",
    "WidgetsError",
    "WidgetsFace",
    "load_app",
]
