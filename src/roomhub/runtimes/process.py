"""The ``process`` runtime: a plain subprocess in the room's directory.

No isolation beyond resource limits (``setrlimit``: address space, CPU
seconds, file size) and the room quota (:mod:`roomhub.runtimes.quota`); the
program runs as the hub's user and sees the host.
That is why the hub refuses a non-loopback bind with it unless the operator
passes ``server.allow_non_loopback`` (see :mod:`roomhub.hub`). Each program
gets its own session and process group so that :meth:`kill` ends everything
it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import pty
import resource
import signal
import struct
import termios
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from ..core.config import ResourceLimits
from .base import ProgramHandle, ProgramSpec, Runtime, Stream
from .quota import ROOM_QUOTAS

CHUNK = 65536


def rlimit_setter(
    limits: ResourceLimits, tty_fd: int | None = None, extra: Callable[[], None] | None = None,
) -> Callable[[], None]:
    """A ``preexec_fn``: a new session, ``limits`` applied, ``tty_fd`` as controlling terminal,
    then ``extra`` (e.g. joining a cgroup).

    ``tty_fd`` is the slave side of the pseudo-terminal, addressed by its own
    number because uvloop runs this before it duplicates the standard streams.
    """
    pairs: list[tuple[int, int]] = []
    if limits.memory_bytes:
        pairs.append((resource.RLIMIT_AS, limits.memory_bytes))
    if limits.cpu_seconds:
        pairs.append((resource.RLIMIT_CPU, limits.cpu_seconds))
    if limits.file_size_bytes:
        pairs.append((resource.RLIMIT_FSIZE, limits.file_size_bytes))

    def preexec() -> None:  # runs in the child, after fork, before exec
        # Our own session (so kill() reaches the whole group), made here rather than with
        # start_new_session because uvloop would call setsid only after this function.
        os.setsid()
        for kind, value in pairs:
            resource.setrlimit(kind, (value, value))
        if tty_fd is not None:
            fcntl.ioctl(tty_fd, termios.TIOCSCTTY, 0)
        if extra is not None:
            extra()

    return preexec


def set_winsize(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def session_members(sid: int) -> list[int]:
    """PIDs of the processes in session ``sid`` (read from /proc; empty where there is none).

    An interactive shell puts each background job in a process group of its
    own, so ending the program's process group is not enough.
    """
    members = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return members
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # Fields after the command (which may hold spaces) start after the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 3 and int(fields[3]) == sid:
            members.append(int(entry))
    return members


class SubprocessHandle(ProgramHandle):
    """A handle on an ``asyncio`` subprocess, with pipes or a pseudo-terminal."""

    def __init__(
        self, proc: asyncio.subprocess.Process, master_fd: int | None,
        on_exit: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.proc = proc
        self._on_exit = on_exit
        self.pid = proc.pid
        self._master = master_fd
        self._queue: asyncio.Queue[tuple[Stream, bytes] | None] = asyncio.Queue(maxsize=64)
        self._open_streams = 0
        self._readers: list[asyncio.Task[None]] = []
        if master_fd is not None:
            self._open_streams = 1
            self._readers.append(asyncio.create_task(self._read_pty(master_fd)))
        else:
            for name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr)):
                if stream is not None:
                    self._open_streams += 1
                    self._readers.append(asyncio.create_task(self._read_pipe(name, stream)))  # type: ignore[arg-type]

    async def _read_pipe(self, name: Stream, stream: asyncio.StreamReader) -> None:
        try:
            while chunk := await stream.read(CHUNK):
                await self._queue.put((name, chunk))
        finally:
            await self._queue.put(None)

    async def _read_pty(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        loop.add_reader(fd, ready.set)
        try:
            while True:
                await ready.wait()
                ready.clear()
                try:
                    chunk = os.read(fd, CHUNK)
                except BlockingIOError:
                    continue
                except OSError as exc:  # EIO: every holder of the slave side has gone
                    if exc.errno == errno.EIO:
                        break
                    raise
                if not chunk:
                    break
                await self._queue.put(("stdout", chunk))
        finally:
            loop.remove_reader(fd)
            await self._queue.put(None)

    async def output(self) -> AsyncIterator[tuple[Stream, bytes]]:
        while self._open_streams:
            item = await self._queue.get()
            if item is None:
                self._open_streams -= 1
                continue
            yield item

    async def write(self, data: bytes) -> None:
        if self.proc.returncode is not None:
            raise BrokenPipeError("the program has exited")
        if self._master is not None:
            view = memoryview(data)
            while view:
                try:
                    written = os.write(self._master, view)
                except BlockingIOError:
                    await asyncio.sleep(0.01)  # terminal buffer full: let the program read
                    continue
                view = view[written:]
        elif self.proc.stdin is not None:
            self.proc.stdin.write(data)
            await self.proc.stdin.drain()
        else:
            raise BrokenPipeError("the program has no stdin")

    async def resize(self, cols: int, rows: int) -> None:
        if self._master is not None and self.proc.returncode is None:
            with contextlib.suppress(OSError):
                set_winsize(self._master, cols, rows)

    async def wait(self) -> int:
        code = await self.proc.wait()
        await self._finish()
        return code

    def _signal_group(self, sig: int) -> None:
        """Signal the program's session: its process group and the groups it made (shell jobs)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)
        for pid in session_members(self.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    async def kill(self, grace: float = 2.0) -> int:
        if self.proc.returncode is None:
            self._signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self.proc.wait()), grace)
            except TimeoutError:
                pass
        # Whatever the leader did, children it left in its group go too.
        self._signal_group(signal.SIGKILL)
        code = await self.proc.wait()
        await self._finish()
        return code

    async def _finish(self) -> None:
        # The program is gone; stragglers of its group holding the output open are ended,
        # then the readers get a bounded time to deliver what is left.
        self._signal_group(signal.SIGKILL)
        if self._on_exit is not None:  # e.g. a cgroup sweep: reaches what left the group
            on_exit, self._on_exit = self._on_exit, None
            await on_exit()
        if self._readers:
            _, pending = await asyncio.wait(self._readers, timeout=2.0)
            for task in pending:
                task.cancel()
        if self._master is not None:
            with contextlib.suppress(OSError):
                os.close(self._master)
            self._master = None


async def spawn(
    argv: list[str], spec: ProgramSpec, env: dict[str, str], cwd: Path,
    *, before_exec: Callable[[], None] | None = None,
    on_exit: Callable[[], Awaitable[None]] | None = None,
    pass_fds: list[int] | tuple[int, ...] = (),
) -> SubprocessHandle:
    """Start ``argv`` as a subprocess with ``spec``'s TTY and limits (shared by local runtimes).

    ``before_exec`` runs in the child after the limits are set (it must be
    async-signal-safe enough for ``preexec_fn``); ``on_exit`` runs once after
    the program and its process group are gone; ``pass_fds`` stay open in
    the child under their numbers (the caller closes its copies).
    """
    if spec.tty:
        master, slave = pty.openpty()
        preexec = rlimit_setter(spec.limits, slave, before_exec)
        set_winsize(slave, spec.cols, spec.rows)
        os.set_blocking(master, False)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env,
                preexec_fn=preexec, pass_fds=pass_fds,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        return SubprocessHandle(proc, master, on_exit)
    preexec = rlimit_setter(spec.limits, None, before_exec)
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if spec.stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=cwd, env=env, preexec_fn=preexec, pass_fds=pass_fds,
    )
    return SubprocessHandle(proc, None, on_exit)


class ProcessRuntime(Runtime):
    """Plain subprocesses: the embedded default for a local machine."""

    name = "process"

    async def start(self, spec: ProgramSpec) -> ProgramHandle:
        """Start ``spec.argv`` in its working directory, under the room quota; ``OSError`` if it cannot."""
        cwd = spec.make_working_directory()
        handle = await spawn(spec.argv, spec, spec.base_env(str(spec.room_dir)), cwd)
        return ROOM_QUOTAS.guard(handle, spec)
