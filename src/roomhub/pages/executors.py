"""Executors: programs attached to a page room.

- ``always``: kept running; restarted with capped exponential backoff, and
  every restart is announced (``exited``, then ``restarted``).
- ``once``: run on a client's request; a request while it runs gets ``busy``;
  a timeout kills it and says so; ``finished`` carries the exit code.
- ``prologue``: run to completion when the room is created, before anything
  else; failure or timeout fails the room's creation.
- ``epilogue``: run at teardown with a timeout; its output goes to the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import time
from typing import Any

from ..runtimes.base import ProgramHandle, ProgramSpec, drain, exit_description
from ..transport.callback_websocket import CallbackWebSocket
from . import protocol as p
from .config import AlwaysExecutor, EpilogueExecutor, ExecutorBase, OnceExecutor, PrologueExecutor
from .context import ExecutorRoom
from .protocol import asks_additions

log = logging.getLogger("roomhub.pages.executors")

KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL


class Scrollback:
    """The last ``limit`` bytes of output, per stream, for late joiners.

    A trimmed stream starts on a UTF-8 character boundary: interactive-widgets' terminal
    decodes each frame alone and throws on a partial character."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.chunks: dict[str, bytearray] = {}

    def add(self, stream: str, data: bytes) -> None:
        if self.limit <= 0:
            return
        buf = self.chunks.setdefault(stream, bytearray())
        buf += data
        if len(buf) > self.limit:
            cut = len(buf) - self.limit
            while cut < len(buf) and cut - (len(buf) - self.limit) < 3 and buf[cut] & 0xC0 == 0x80:
                cut += 1  # a UTF-8 continuation byte: the character began before the cut
            del buf[:cut]

    def clear(self) -> None:
        self.chunks.clear()


def limit_reason(handle: ProgramHandle) -> dict[str, str]:
    """``{"reason": ...}`` for an ``exited`` or ``finished`` frame when the runtime ended the
    program for a limit (memory, room quota), else nothing."""
    reason = handle.limit_exceeded
    return {} if reason is None else {"reason": reason}


def split_utf8(data: bytes) -> tuple[bytes, bytes]:
    """``data`` as ``(head, tail)`` where ``tail`` is an incomplete UTF-8 character ending it (at
    most 3 bytes; empty when ``data`` ends on a character boundary or is not UTF-8 there)."""
    for back in range(1, min(3, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:  # a continuation byte: look further back for its lead byte
            continue
        length = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4 if byte & 0xF8 == 0xF0 else 1
        return (data[:-back], data[-back:]) if length > back else (data, b"")
    return data, b""


def argv_of(command: list[str] | str) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


class Executor:
    """What every executor kind shares: its room, name, configuration and program spec."""

    kind = "executor"

    def __init__(self, room: ExecutorRoom, name: str, config: Any) -> None:
        self.room = room
        self.name = name
        self.config = config
        self.log = logging.getLogger(f"roomhub.pages.{self.kind}")

    def spec(self, cols: int = 80, rows: int = 24) -> ProgramSpec:
        c: ExecutorBase = self.config
        return ProgramSpec(
            argv=argv_of(c.command),
            room_dir=self.room.directory,
            working_directory=c.working_directory,
            env=dict(c.env),
            tty=c.tty,
            cols=cols,
            rows=rows,
            limits=c.limits,
            image=c.image,
            labels=self.room.labels(self.name),
            stdin=c.tty or self.kind == "always",
            container=c.container,
        )

    async def launch(self, cols: int = 80, rows: int = 24) -> ProgramHandle:
        metrics = self.room.ctx.metrics
        try:
            handle = await self.room.runtime_for(self.config).start(self.spec(cols, rows))
        except Exception:
            if metrics is not None:
                metrics.executor_exits.labels(self.kind, "start_failed").inc()
            raise
        if metrics is not None:
            metrics.executor_starts.labels(self.kind).inc()
        return handle

    def ended(self, handle: ProgramHandle, code: int | None, timed_out: bool = False) -> None:
        """Count a program's end by outcome: ``timeout``, ``limit`` (the runtime ended it),
        ``ok`` (exit code 0) or ``failed``."""
        metrics = self.room.ctx.metrics
        if metrics is not None:
            outcome = ("timeout" if timed_out else "limit" if handle.limit_exceeded is not None
                       else "ok" if code == 0 else "failed")
            metrics.executor_exits.labels(self.kind, outcome).inc()

    async def relay(self, handle: ProgramHandle, scrollback: Scrollback) -> None:
        """Broadcast ``handle``'s output (kept in ``scrollback`` too) at the pace of the fastest
        member, until it ends. Frames end on UTF-8 character boundaries (a partial character waits
        for the next chunk of its stream): interactive-widgets' widgets decode each frame alone
        and throw on a partial character."""
        pending: dict[str, bytes] = {}

        async def emit(stream: str, data: bytes) -> None:
            await self.room.wait_writable()
            scrollback.add(stream, data)
            self.room.broadcast(p.output(self.name, stream, data))

        async for stream, chunk in handle.output():
            held = pending.get(stream)
            data, pending[stream] = split_utf8(held + chunk if held else chunk)
            if data:
                await emit(stream, data)
        for stream, rest in pending.items():
            if rest:
                await emit(stream, rest)

    def broadcast(self, message: dict[str, Any]) -> None:
        """Send a message of interactive-widgets' protocol to every member."""
        self.room.broadcast(p.encode(self.name, message))

    def announce(self, message: dict[str, Any], plain: dict[str, Any] | None = None) -> None:
        """Send one of roomhub's additions to the members that asked for them, and ``plain``
        (what interactive-widgets-backend sends instead, if anything) to the others."""
        self.room.broadcast_addition(
            p.encode(self.name, message), None if plain is None else p.encode(self.name, plain)
        )

    async def start(self) -> None:
        """Called once the room's prologues have succeeded."""

    async def stop(self) -> None:
        """Called at teardown; must leave no program running."""

    async def handle(self, connection: CallbackWebSocket, message: Any) -> None:
        raise p.ProtocolError(p.NOT_ACCEPTED, f"{self.kind} executors accept no messages", self.name)

    def state_frames(self, additions: bool) -> list[str]:
        """Frames that bring a late joiner up to date; ``additions``: it asked for roomhub's
        additions (the ``state`` frame), else only frames of interactive-widgets' protocol."""
        return []


class AlwaysRunner(Executor):
    kind = "always"
    config: AlwaysExecutor

    def __init__(self, room: ExecutorRoom, name: str, config: AlwaysExecutor) -> None:
        super().__init__(room, name, config)
        self.handle_: ProgramHandle | None = None
        self.scrollback = Scrollback(config.scrollback_bytes)
        self.restarts = 0
        self.sizes: dict[int, tuple[int, int]] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def size(self) -> tuple[int, int]:
        """The terminal size shared by every viewer: the smallest of their sizes (as tmux does)."""
        if not self.sizes:
            return 80, 24
        return min(c for c, _ in self.sizes.values()), min(r for _, r in self.sizes.values())

    async def start(self) -> None:
        # The first launch is awaited so that input sent right after joining finds the program.
        await self._launch()
        self._task = asyncio.create_task(self._run(), name=f"always:{self.room.name}:{self.name}")

    async def _launch(self) -> None:
        try:
            self.handle_ = await self.launch(*self.size())
        except Exception as exc:
            self.handle_ = None
            self.log.warning("%s/%s: cannot start: %s", self.room.name, self.name, exc)
            self.announce({"type": "error", "code": p.START_FAILED, "message": str(exc)})

    async def _run(self) -> None:
        delay = self.config.restart_delay
        started = time.monotonic()
        while not self._stopping:
            code = None
            ended: dict[str, str] = {}
            if self.handle_ is not None:
                await self.relay(self.handle_, self.scrollback)
                code = await self.handle_.wait()
                ended = limit_reason(self.handle_)
                self.ended(self.handle_, code)
                self.handle_ = None
            if self._stopping:
                return
            if time.monotonic() - started >= self.config.stable_after:
                delay = self.config.restart_delay  # it ran long enough: start the backoff afresh
            self.restarts += 1
            if self.room.ctx.metrics is not None:
                self.room.ctx.metrics.executor_restarts.labels(self.kind).inc()
            self.log.info(
                "%s/%s: %s, restart %d in %.2f s", self.room.name, self.name,
                "not started" if code is None else exit_description(code), self.restarts, delay,
            )
            self.announce({"type": "exited", "exitCode": code, "restartIn": delay, **ended})
            await asyncio.sleep(delay)
            delay = min(max(delay * 2, 0.05), self.config.restart_delay_max)
            started = time.monotonic()
            await self._launch()
            if self.handle_ is not None:
                self.announce({"type": "restarted", "restarts": self.restarts})

    async def stop(self) -> None:
        self._stopping = True
        if self.handle_ is not None:
            with contextlib.suppress(Exception):
                await self.handle_.kill(KILL_GRACE)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def handle(self, connection: CallbackWebSocket, message: Any) -> None:
        msg = p.decode_always(message)
        if isinstance(msg, p.Resize):
            self.sizes[connection.id] = (msg.cols, msg.rows)
            if self.handle_ is not None:
                await self.handle_.resize(*self.size())
            return
        if self.handle_ is None:
            raise p.ProtocolError(p.NOT_RUNNING, "the program is restarting; input dropped", self.name)
        try:
            await self.handle_.write(msg.data)
        except (BrokenPipeError, ConnectionResetError, OSError):
            raise p.ProtocolError(p.NOT_RUNNING, "the program has exited; input dropped", self.name) from None

    async def forget(self, connection: CallbackWebSocket) -> None:
        """A viewer left: the terminal takes the smallest size of those who remain."""
        if self.sizes.pop(connection.id, None) is not None and self.handle_ is not None:
            await self.handle_.resize(*self.size())

    def state_frames(self, additions: bool) -> list[str]:
        frames = [p.encode(self.name, {
            "type": "state", "kind": self.kind, "running": self.handle_ is not None,
            "restarts": self.restarts,
        })] if additions else []
        frames += [p.output(self.name, s, bytes(b)) for s, b in self.scrollback.chunks.items() if b]
        return frames


class OnceRunner(Executor):
    kind = "once"
    config: OnceExecutor

    def __init__(self, room: ExecutorRoom, name: str, config: OnceExecutor) -> None:
        super().__init__(room, name, config)
        self.scrollback = Scrollback(config.scrollback_bytes)
        self.task: asyncio.Task[None] | None = None
        self.handle_: ProgramHandle | None = None
        self.last_exit: int | None = None

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    async def handle(self, connection: CallbackWebSocket, message: Any) -> None:
        if self.running:  # interactive-widgets ignores the request silently
            if asks_additions(connection):
                connection.send(p.encode(self.name, {"type": "busy", "message": "already running"}))
            return
        self.scrollback.clear()
        self.task = asyncio.create_task(self._run(), name=f"once:{self.room.name}:{self.name}")

    async def _run(self) -> None:
        self.broadcast({"type": "started"})
        try:
            self.handle_ = await self.launch()
        except Exception as exc:
            self.log.warning("%s/%s: cannot start: %s", self.room.name, self.name, exc)
            self.room.broadcast(p.errored(self.name, f"cannot start: {exc}"))
            return
        timed_out = False

        pumping = asyncio.create_task(self.relay(self.handle_, self.scrollback))
        try:
            await asyncio.wait_for(asyncio.shield(self.handle_.wait()), self.config.timeout)
        except TimeoutError:
            timed_out = True
            self.announce({"type": "timeout", "after": self.config.timeout})
            self.log.info("%s/%s: timed out after %.1f s", self.room.name, self.name, self.config.timeout)
        except asyncio.CancelledError:
            await self.handle_.kill(KILL_GRACE)
            pumping.cancel()
            raise
        code = await self.handle_.kill(KILL_GRACE) if timed_out else await self.handle_.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await pumping
        self.last_exit = code
        ended = limit_reason(self.handle_)
        self.ended(self.handle_, code, timed_out)
        self.handle_ = None
        self.announce({"type": "finished", "exitCode": code, "timedOut": timed_out, **ended},
                      {"type": "finished"})

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task

    def state_frames(self, additions: bool) -> list[str]:
        frames = [p.encode(self.name, {
            "type": "state", "kind": self.kind, "running": self.running, "exitCode": self.last_exit,
        })] if additions else []
        frames += [p.output(self.name, s, bytes(b)) for s, b in self.scrollback.chunks.items() if b]
        return frames


class StepRunner(Executor):
    """A prologue or epilogue: run to completion with a timeout."""

    config: PrologueExecutor | EpilogueExecutor

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.config.type

    async def run(self) -> tuple[int, bytes]:
        """Run to the end; returns ``(exit code, output)``. Raises ``TimeoutError`` after ``timeout`` s."""
        handle = await self.launch()
        try:
            out = await asyncio.wait_for(drain(handle, 64 * 1024), self.config.timeout)
        except (TimeoutError, asyncio.CancelledError) as exc:
            code = await handle.kill(KILL_GRACE)
            self.ended(handle, code, isinstance(exc, TimeoutError))
            raise
        code = await handle.wait()
        self.ended(handle, code)
        return code, out
