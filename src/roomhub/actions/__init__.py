"""The actions face: Python functions the browser calls, streams, processes, session and scope.

It replaces the Igor server and speaks its message shapes on ``/actions``
(:mod:`.protocol`). The application gives an :class:`ActionsAPI` (or a dict
of handlers) named in the configuration's ``[actions] api``; its processes
start and stop with the hub. See :mod:`.api` for how handlers are written.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.routing import BaseRoute

from ..core.context import FaceContext
from ..core.errors import HubError
from ..core.face import Face
from ..transport.callback_websocket import SocketEndpoint
from .api import ActionsAPI, APIError, Handler, ProcessSpec, flatten, load_api
from .calls import Stream, StreamClosed
from .endpoint import ActionsSocket, file_routes
from .files import FileAccessError, FileServer
from .processes import Processes, ProcessOutput
from .saved import SavedState
from .session import ActionsState


class ActionsFace(Face):
    """Serves ``/actions`` and, if enabled, the file server; runs the API's processes.

    Raises :class:`~roomhub.core.errors.HubError` when the configured API cannot be loaded.
    """

    name = "actions"

    def __init__(self, context: FaceContext, api: ActionsAPI | None = None) -> None:
        super().__init__(context)
        config = context.config.actions
        server = context.config.server
        if api is None:
            try:
                api = load_api(config.api, config.pythonpath) if config.api else ActionsAPI()
            except APIError as exc:
                raise HubError(f"actions.api: {exc}") from None
        self.api = api
        self.state = ActionsState(
            api,
            config,
            context.bus,
            debug=config.debug or server.log_level == "debug",
            max_frame_bytes=config.max_frame_bytes or server.limits.max_frame_bytes,
            max_json_depth=server.limits.max_json_depth,
        )
        self.state.metrics = context.metrics
        self.processes = Processes(self.state)
        self.socket = ActionsSocket(context, self.state)
        self.files: FileServer | None = None
        if config.files.enabled:
            root = config.files.root or context.data_dir / "actions-files"
            self.files = FileServer(root, config.files.max_bytes, config.files.read_only)

    @property
    def scope(self) -> dict[str, Any]:
        """The hub-wide dict shared by every handler and process."""
        return self.state.scope

    def routes(self) -> list[BaseRoute]:
        if self.files is None:
            return []
        config = self.context.config.actions.files
        return file_routes(self.files, config.prefix, config.allowed_origins)

    def socket_endpoints(self) -> list[SocketEndpoint]:
        """The ``/actions`` socket (the file server's HTTP routes stay with the router)."""
        return [self.socket]

    def overview(self) -> dict[str, Any]:
        """The actions sessions: id, connected or not, running calls, age (seconds)."""
        now = time.time()
        sessions = []
        for sid in self.state.sessions:
            session = self.state.sessions.session(sid)
            if session is None:
                continue
            client = self.state.clients.get(sid)
            sessions.append({"id": sid, "connected": client is not None,
                             "peer": client.conn.peer if client is not None else None,
                             "calls": len(client.calls) if client is not None else 0,
                             "age": round(now - session.created_at, 1)})
        return {"sessions": sessions}

    async def start(self) -> None:
        cluster = self.context.cluster
        if cluster is not None:  # sessions and scope outlive their holder (see .saved)
            ttl = self.context.config.actions.session_timeout + 30
            self.state.saved = SavedState(cluster.config.redis, cluster.config.prefix, ttl)
            self.state.saved.start(self.state.sessions.live)
        self.processes.start()

    async def stop(self) -> None:
        timeout = self.context.config.server.shutdown_timeout
        await self.processes.stop(min(5.0, timeout / 2))
        await self.state.close()
        if self.state.saved is not None:
            await self.state.saved.close()


__all__ = [
    "APIError",
    "ActionsAPI",
    "ActionsFace",
    "FileAccessError",
    "FileServer",
    "Handler",
    "ProcessOutput",
    "ProcessSpec",
    "Processes",
    "Stream",
    "StreamClosed",
    "flatten",
    "load_api",
]
