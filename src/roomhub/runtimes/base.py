"""The runtime interface: where a program runs, and the handle to it.

Every runtime (``process``, ``bubblewrap``, ``docker``) turns a
:class:`ProgramSpec` into a :class:`ProgramHandle` that offers the same
operations: write stdin, read output, resize a TTY, wait, kill.
"""

from __future__ import annotations

import abc
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .. import confined
from ..core.config import ContainerOptions, ResourceLimits

Stream = Literal["stdout", "stderr"]


class RuntimeUnavailable(Exception):
    """A program could not be started; the message says why and what to do."""




@dataclass
class ProgramSpec:
    """What to run.

    ``argv``: the command; ``room_dir``: the room's directory on the hub's
    host (shared by all executors of a room); ``working_directory``:
    relative to the room directory; ``env``: added to a minimal environment
    (the hub's own environment is never passed on); ``tty``: run under a
    pseudo-terminal (``cols`` x ``rows``), stdout and stderr merged.
    ``labels`` identify the program (hub, room, executor) for runtimes that
    can tag what they create. ``container``: user, read-only root and
    network of sandboxing runtimes (ignored by ``process``).
    """

    argv: list[str]
    room_dir: Path
    working_directory: str = "."
    env: dict[str, str] = field(default_factory=dict)
    tty: bool = False
    cols: int = 80
    rows: int = 24
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    image: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    stdin: bool = True
    container: ContainerOptions = field(default_factory=ContainerOptions)

    def make_working_directory(self) -> Path:
        """Make the working directory (and its missing parents) in the room directory and return
        it (by name, not resolved). The room's programs may have put links there: none is
        followed (:mod:`roomhub.confined`); raises :class:`confined.Refused` for one, or for a
        path with ``..``. An absolute ``working_directory`` is a folder the hub itself chose
        outside any room (a backend's package): it is used as it is, not made."""
        if os.path.isabs(self.working_directory):
            return Path(self.working_directory)
        parts = confined.parts_of(self.working_directory)
        confined.make_folders(self.room_dir, parts)
        return self.room_dir.joinpath(*parts)

    def base_env(self, home: str) -> dict[str, str]:
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
            "HOME": home,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
        }
        if self.tty:
            env["TERM"] = "xterm-256color"
        env.update(self.env)
        return env


class ProgramHandle(abc.ABC):
    """A running program. Output chunks are bytes; exit codes are ints (negative: signal).

    ``limit_exceeded``: ``None``, or, once the runtime (or the kernel, as the
    runtime learnt) ended the program for a limit, a sentence saying which
    (e.g. ``"room quota exceeded: ..."``), for the room's clients; the output
    then ends with it too (:func:`limit_notice`).
    """

    limit_exceeded: str | None = None

    @abc.abstractmethod
    async def write(self, data: bytes) -> None:
        """Write to the program's stdin (or its terminal). Raises ``BrokenPipeError`` once it has gone."""

    @abc.abstractmethod
    def output(self) -> AsyncIterator[tuple[Stream, bytes]]:
        """Yield ``(stream, chunk)`` until the program has closed its output; call once."""

    @abc.abstractmethod
    async def resize(self, cols: int, rows: int) -> None:
        """Resize the pseudo-terminal (no-op without a TTY)."""

    @abc.abstractmethod
    async def wait(self) -> int:
        """Wait for the exit and return its code (negative: killed by that signal)."""

    @abc.abstractmethod
    async def kill(self, grace: float = 2.0) -> int:
        """Ask politely (SIGTERM), wait ``grace`` seconds, then force (SIGKILL); return the exit code.

        Every process the program started is ended too.
        """


class Runtime(abc.ABC):
    """A place to run programs."""

    name: str = "runtime"

    async def check(self) -> None:
        """Raise :class:`RuntimeUnavailable` with a helpful message if unusable (called at start-up)."""

    @abc.abstractmethod
    async def start(self, spec: ProgramSpec) -> ProgramHandle:
        """Start a program; raise :class:`RuntimeUnavailable` (or ``OSError``) if it cannot start."""

    async def prepare_room(self, room_dir: Path, labels: dict[str, str]) -> None:
        """Create what a room's programs share (called when a room is created)."""

    async def release_room(self, room_dir: Path, labels: dict[str, str]) -> None:
        """Remove what :meth:`prepare_room` made (called after a room's teardown)."""

    async def cleanup_orphans(self, hub_id: str) -> None:
        """Remove what a crashed earlier run of this hub left behind."""

    async def close(self) -> None:
        """Release the runtime's own resources at shutdown."""


async def drain(handle: ProgramHandle, limit: int = 1 << 20) -> bytes:
    """Collect a program's output (at most ``limit`` bytes kept) and wait for it."""
    chunks: list[bytes] = []
    size = 0
    async for _, chunk in handle.output():
        if size < limit:
            chunks.append(chunk[: limit - size])
            size += len(chunk)
    await handle.wait()
    return b"".join(chunks)


def limit_notice(reason: str, tty: bool) -> tuple[Stream, bytes]:
    """The output chunk that tells a program's viewers why the runtime ended it.

    ``reason`` is :attr:`ProgramHandle.limit_exceeded`; the line goes to
    stdout under a TTY (where stderr is merged) and to stderr otherwise.
    """
    nl = b"\r\n" if tty else b"\n"
    return ("stdout" if tty else "stderr", nl + f"[roomhub] {reason}".encode() + nl)


def exit_description(code: int) -> str:
    if code < 0:
        import signal

        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


__all__ = [
    "ProgramHandle",
    "ProgramSpec",
    "Runtime",
    "RuntimeUnavailable",
    "Stream",
    "drain",
    "exit_description",
    "limit_notice",
]
