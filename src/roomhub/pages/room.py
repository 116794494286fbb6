"""A page room: its directory, its executors, and the order they start and stop in.

Creation: make the room directory, let the runtime prepare it, write files'
initial contents, run every ``prologue`` to completion (in page order), then
start file watching, file views and ``always`` executors. Teardown: stop
``always`` and ``once`` programs and the watcher, run the ``epilogue``s
(output to the log), let the runtime release the room, remove the directory.

Members are of two audiences (see :mod:`.protocol`): those that asked for
roomhub's additions and those that speak interactive-widgets' protocol only.
Each audience has its own bus topic, so each gets its frames in order and a
frame is still encoded once for all the members of an audience.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable
from typing import Any

from ..core.bus import Bus
from ..core.rooms import Room
from ..runtimes.base import Runtime, exit_description
from ..transport.callback_websocket import CallbackWebSocket
from ..transport.traffic import Frame
from . import protocol as p
from .context import PageContext
from .executors import AlwaysRunner, Executor, OnceRunner, StepRunner
from .files import FileView, RoomWatcher, make_executor
from .protocol import asks_additions

log = logging.getLogger("roomhub.pages.room")


class PrologueFailed(Exception):
    pass


class PageRoom(Room[CallbackWebSocket]):
    def __init__(self, name: str, ctx: PageContext, bus: Bus) -> None:
        super().__init__(ctx.path, name, bus)
        self.ctx = ctx
        # The name is validated (no '/' nor '..'); its hex keeps the file system happy anyway.
        self.directory = ctx.rooms_dir / name.encode().hex()
        self.executors: dict[str, Executor] = {
            ename: make_executor(self, ename, econf) for ename, econf in ctx.page.executors.items()
        }
        self.watcher: RoomWatcher | None = None
        self.prologue_output: list[str] = []
        self.plain_topic = f"{self.topic}\x00plain"
        self._unsubscribe_plain: Callable[[], None] | None = None

    def labels(self, executor: str | None = None) -> dict[str, str]:
        labels = {"roomhub.hub": self.ctx.hub_id, "roomhub.room": f"{self.namespace}:{self.name}"}
        if executor:
            labels["roomhub.executor"] = executor
        return labels

    def runtime_for(self, config: Any) -> Runtime:
        return self.ctx.runtimes[config.runtime or self.ctx.default_runtime]

    def _of(self, kind: type[Executor], type_: str | None = None) -> list[Any]:
        return [
            e for e in self.executors.values()
            if isinstance(e, kind) and (type_ is None or e.config.type == type_)
        ]

    def _runtimes_used(self) -> set[Runtime]:
        return {
            self.runtime_for(e.config) for e in self.executors.values() if not isinstance(e, FileView)
        }

    def broadcast(self, frame: Frame) -> None:
        """Send a frame of interactive-widgets' protocol to every member."""
        super().broadcast(frame)
        self.bus.publish(self.plain_topic, frame)

    def broadcast_addition(self, frame: Frame, plain: Frame | None = None) -> None:
        """Send ``frame`` to the members that asked for roomhub's additions, and ``plain`` (the
        form interactive-widgets-backend sends, if it sends one) to the others."""
        super().broadcast(frame)
        if plain is not None:
            self.bus.publish(self.plain_topic, plain)

    def _deliver(self, frame: Frame) -> None:
        for member in tuple(self.members):
            if asks_additions(member):
                member.send(frame)

    def _deliver_plain(self, frame: Frame) -> None:
        for member in tuple(self.members):
            if not asks_additions(member):
                member.send(frame)

    async def on_create(self) -> None:
        self._unsubscribe_plain = self.bus.subscribe(self.plain_topic, self._deliver_plain)
        self.directory.mkdir(parents=True, exist_ok=True)
        for runtime in self._runtimes_used():
            await runtime.prepare_room(self.directory, self.labels())
        views: list[FileView] = self._of(FileView)
        for view in views:
            await view.prepare()
        for step in self._of(StepRunner, "prologue"):
            await self._run_prologue(step)
        if views:
            self.watcher = RoomWatcher(self.directory, views, min(v.config.debounce for v in views))
            self.watcher.start()
        for executor in self.executors.values():
            if not isinstance(executor, StepRunner):
                await executor.start()

    async def _run_prologue(self, step: StepRunner) -> None:
        try:
            code, out = await step.run()
        except TimeoutError:
            raise PrologueFailed(f"prologue {step.name!r} timed out after {step.config.timeout} s") from None
        except Exception as exc:
            raise PrologueFailed(f"prologue {step.name!r} could not start: {exc}") from exc
        if out:
            self.prologue_output.append(p.output(step.name, "stdout", out))
        if code != 0:
            tail = out[-500:].decode(errors="replace")
            raise PrologueFailed(f"prologue {step.name!r} failed ({exit_description(code)}): {tail}")

    async def on_join(self, connection: CallbackWebSocket) -> None:
        additions = asks_additions(connection)
        if additions:
            kinds = {name: e.kind for name, e in self.executors.items()}
            connection.send(p.encode(None, {"type": "joined", "room": self.name, "executors": kinds}))
        for frame in self.prologue_output:
            connection.send(frame)
        for executor in self.executors.values():
            for frame in executor.state_frames(additions):
                connection.send(frame)

    async def handle(self, connection: CallbackWebSocket, frame: str | bytes) -> None:
        """Dispatch one client frame. Raises :class:`protocol.ProtocolError` for bad input."""
        msg = p.decode_client(frame, self.ctx.max_json_depth)
        executor = self.executors.get(msg.executor)
        if executor is None:
            raise p.ProtocolError(p.UNKNOWN_EXECUTOR, f"no executor named {msg.executor!r}", msg.executor)
        try:
            await executor.handle(connection, msg.message)
        except p.ProtocolError as exc:
            exc.executor = exc.executor or msg.executor  # so the client can show it on the widget
            raise

    async def forget(self, connection: CallbackWebSocket) -> None:
        for executor in self._of(AlwaysRunner):
            await executor.forget(connection)

    async def on_teardown(self) -> None:
        if self._unsubscribe_plain is not None:
            self._unsubscribe_plain()
            self._unsubscribe_plain = None
        await asyncio.gather(
            *(e.stop() for e in self.executors.values() if isinstance(e, AlwaysRunner | OnceRunner)),
            return_exceptions=True,
        )
        if self.watcher is not None:
            await self.watcher.stop()
        for step in self._of(StepRunner, "epilogue"):
            await self._run_epilogue(step)
        for runtime in self._runtimes_used():
            try:
                await runtime.release_room(self.directory, self.labels())
            except Exception:
                log.exception("%s:%s: releasing the room failed", self.namespace, self.name)
        await asyncio.to_thread(shutil.rmtree, self.directory, True)

    async def _run_epilogue(self, step: StepRunner) -> None:
        try:
            code, out = await step.run()
        except TimeoutError:
            log.warning("%s:%s: epilogue %r timed out after %s s", self.namespace, self.name,
                        step.name, step.config.timeout)
            return
        except Exception as exc:
            log.warning("%s:%s: epilogue %r could not start: %s", self.namespace, self.name, step.name, exc)
            return
        log.info("%s:%s: epilogue %r ended (%s): %s", self.namespace, self.name, step.name,
                 exit_description(code), out[-2000:].decode(errors="replace").strip())

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["executors"] = {
            name: {"kind": e.kind, "running": getattr(e, "running", None)
                   if isinstance(e, OnceRunner) else getattr(e, "handle_", None) is not None}
            for name, e in self.executors.items() if isinstance(e, AlwaysRunner | OnceRunner)
        }
        return info
