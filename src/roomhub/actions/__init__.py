"""The actions face: Python functions the browser calls, streams, processes, session and scope.

It replaces the Igor server and speaks its message shapes on ``/actions``
(:mod:`.protocol`). The application gives an :class:`ActionsAPI` (or a dict
of handlers) named in the configuration's ``[actions] api``; its processes
start and stop with the hub (in a cluster, with the hub's holding of the lease
``actions``: they run on one hub only, the one serving every client). See :mod:`.api` for how handlers are
written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from starlette.routing import BaseRoute

from ..core.context import FaceContext
from ..core.errors import HubError
from ..core.face import Face
from ..core.relay import HeldRoom
from ..transport.callback_websocket import SocketEndpoint
from .api import ActionsAPI, APIError, Handler, ProcessSpec, flatten, load_api
from .calls import Stream, StreamClosed
from .endpoint import ActionsSocket, file_routes
from .files import FileAccessError, FileServer
from .processes import Processes, ProcessOutput
from .saved import SavedState
from .session import ActionsState

log = logging.getLogger("roomhub.actions")

ROOM = "actions"
"""The lease key of the actions room in a cluster: its holder serves every client and runs the
processes."""


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
        # In a cluster, the room ``actions`` as its holder sees it: alive while clients or
        # sessions are here, or while processes are registered and this hub holds the lease
        # (they run there and nowhere else); dropped (fencing) when the lease is lost.
        self.held = HeldRoom(alive=self._alive, drop=self._drop)
        self.socket = ActionsSocket(context, self.state, self.held)
        self._claiming: asyncio.Task[None] | None = None
        self._processes_lock = asyncio.Lock()  # a start never overlaps a stop waiting for threads
        self._start_failed = False
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
        relay = self.context.relay
        if relay is not None and self.api.processes:
            # The processes run on one hub, the holder of ``actions``, which serves every client
            # (their output reaches all of them; their side effects happen once). Every hub
            # claims it from its start; the others retry at each heartbeat, so that one of them
            # takes over within the lease time when the holder dies.
            self._claiming = relay.keep_claiming(ROOM, self.held, self._holding)
        else:
            self.processes.start()

    def _alive(self) -> bool:
        relay = self.context.relay
        holding = bool(self.api.processes) and relay is not None and relay.cluster.holds(ROOM)
        return holding or self.state.alive()

    async def _holding(self) -> None:
        """This hub holds ``actions``: start the processes unless they run (the scope a former
        holder saved read first, so that they see it)."""
        if self.processes.running or self._start_failed:
            return
        await self.state.restore(None, None)
        relay = self.context.relay
        async with self._processes_lock:
            if self.processes.running or relay is None or not relay.cluster.holds(ROOM):
                return  # started meanwhile, or the lease lost while the scope was read
            log.info("actions: this hub holds the lease %r: starting the processes", ROOM)
            try:
                self.processes.start()
            except Exception:
                self._start_failed = True  # not again at every heartbeat: once per lease taken
                log.exception("actions: the processes could not be started")

    async def _drop(self, code: int, reason: str) -> None:
        """The lease of ``actions`` is lost: the processes halted first (another hub may start
        them once the lease expires), then the clients closed and the room emptied."""
        async with self._processes_lock:
            running = self.processes.running
            if running:
                log.info("actions: this hub lost the lease %r: stopping the processes", ROOM)
            self.processes.halt()
            self._start_failed = False
            await self.state.drop(code, reason)
            if running:
                await self.processes.stop(self._grace())

    def _grace(self) -> float:
        return min(5.0, self.context.config.server.shutdown_timeout / 2)

    async def stop(self) -> None:
        if self._claiming is not None:
            self._claiming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._claiming
        async with self._processes_lock:
            await self.processes.stop(self._grace())
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
