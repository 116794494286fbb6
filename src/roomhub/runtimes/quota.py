"""The room quota (``limits.room_bytes``): the disk space a room's directory may use.

The hub measures the room directory while the room's programs run and ends
every program whose quota the room exceeds; the program's output then ends
with a notice and its handle's :attr:`~.base.ProgramHandle.limit_exceeded`
says why, which the pages face passes on to the room's clients.

Why measuring and not a size-limited file system: a mount per room (a loop
device with its own file system, or a project quota) needs privileges and
file-system features the hub cannot count on, and would take the room's files
away from the hub's own file watching; ``file_size_bytes`` bounds each file
already, and what crosses the quota between two scans (at most the interval
times the program's write rate) is removed with the room. Files a program
deletes while keeping them open are not seen; the memory and CPU limits and
the room's lifetime bound those.

One scanner per room directory serves every guarded program of the room:
it walks the tree with :func:`os.scandir` in a worker thread (symbolic links
are not followed, hard links are counted once), every
:data:`SCAN_INTERVAL` seconds or, for a tree so large that a walk takes
long, twenty times the last walk's duration (the walks then take at most a
twentieth of a core).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from .base import ProgramHandle, ProgramSpec, Stream, limit_notice

log = logging.getLogger("roomhub.runtimes.quota")

SCAN_INTERVAL = 0.5  # seconds between two walks of a room directory
SCAN_SHARE = 20  # a walk is followed by a pause of at least this many times its duration
MiB = 1 << 20


def disk_usage(root: Path) -> int:
    """Bytes of disk the tree below ``root`` occupies (allocated blocks, as ``du`` counts them).

    Symbolic links are not followed; a file with several links is counted
    once; entries that vanish or cannot be read during the walk are skipped.
    """
    total = 0
    linked: set[tuple[int, int]] = set()
    folders = [os.fspath(root)]
    while folders:
        try:
            entries = os.scandir(folders.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    info = entry.stat(follow_symlinks=False)
                    folder = entry.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                if folder:
                    folders.append(entry.path)
                elif info.st_nlink > 1:
                    key = (info.st_dev, info.st_ino)
                    if key in linked:
                        continue
                    linked.add(key)
                total += info.st_blocks * 512
    return total


def quota_reason(used: int, limit: int) -> str:
    """The sentence clients get when a program is ended for the room quota (sizes in MiB)."""
    return (
        f"room quota exceeded: the room's files use {used / MiB:.1f} MiB of {limit / MiB:.1f} MiB;"
        " the program was killed"
    )


class QuotaGuard(ProgramHandle):
    """A program's handle, ended by its room's scanner past ``limit`` bytes (else the same handle)."""

    def __init__(self, inner: ProgramHandle, limit: int, tty: bool) -> None:
        self.inner = inner
        self.limit = limit
        self._tty = tty
        self._reason: str | None = None
        self._kill: asyncio.Task[int] | None = None

    @property  # type: ignore[override]
    def limit_exceeded(self) -> str | None:
        """The room quota's reason, else the runtime's own (e.g. docker's out of memory)."""
        return self._reason or self.inner.limit_exceeded

    def breach(self, used: int) -> None:
        """End the program (SIGTERM then, at once, SIGKILL) for a room that uses ``used`` bytes."""
        if self._reason is None:
            self._reason = quota_reason(used, self.limit)
            self._kill = asyncio.create_task(self.inner.kill(0))

    async def write(self, data: bytes) -> None:
        await self.inner.write(data)

    async def output(self) -> AsyncIterator[tuple[Stream, bytes]]:
        async for item in self.inner.output():
            yield item
        if self._reason is not None:
            yield limit_notice(self._reason, self._tty)

    async def resize(self, cols: int, rows: int) -> None:
        await self.inner.resize(cols, rows)

    async def wait(self) -> int:
        return await self.inner.wait()

    async def kill(self, grace: float = 2.0) -> int:
        return await self.inner.kill(grace)


class RoomScan:
    """The programs guarded in one room directory, and the task that measures it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.guards: set[QuotaGuard] = set()
        self.task: asyncio.Task[None] | None = None


class RoomQuotas:
    """The scanners of the room directories whose programs run with a room quota."""

    def __init__(self) -> None:
        self._rooms: dict[Path, RoomScan] = {}
        self._watchers: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references

    def guard(self, handle: ProgramHandle, spec: ProgramSpec) -> ProgramHandle:
        """``handle`` under ``spec.limits.room_bytes`` for ``spec.room_dir`` (itself without a quota)."""
        limit = spec.limits.room_bytes
        if not limit:
            return handle
        guard = QuotaGuard(handle, limit, spec.tty)
        directory = spec.room_dir.resolve()
        scan = self._rooms.get(directory)
        if scan is None or scan.task is None or scan.task.done():
            scan = self._rooms[directory] = RoomScan(directory)
            scan.task = asyncio.create_task(self._scan(scan), name=f"room-quota:{directory.name}")
        scan.guards.add(guard)
        watcher = asyncio.create_task(self._forget_at_exit(scan, guard))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        return guard

    async def _forget_at_exit(self, scan: RoomScan, guard: QuotaGuard) -> None:
        with contextlib.suppress(Exception):
            await guard.inner.wait()
        scan.guards.discard(guard)
        if not scan.guards and scan.task is not None:
            # Nothing left to guard: the scanner stops now rather than after its pause.
            scan.task.cancel()
            if self._rooms.get(scan.directory) is scan:
                del self._rooms[scan.directory]

    async def _scan(self, scan: RoomScan) -> None:
        while scan.guards:
            started = time.monotonic()
            used = await asyncio.to_thread(disk_usage, scan.directory)
            took = time.monotonic() - started
            for guard in list(scan.guards):
                if used > guard.limit:
                    log.info("%s: %s", scan.directory, quota_reason(used, guard.limit))
                    scan.guards.discard(guard)
                    guard.breach(used)
            await asyncio.sleep(max(SCAN_INTERVAL, took * SCAN_SHARE))


ROOM_QUOTAS = RoomQuotas()
"""The hub's scanners, shared by every runtime: a room using several runtimes is walked once."""


__all__ = ["ROOM_QUOTAS", "QuotaGuard", "RoomQuotas", "disk_usage", "quota_reason"]
