"""File executors: a file of the room directory, pushed to viewers, written by editors.

The hub watches the room directory itself (watchfiles, one watcher per
room) instead of running interactive-widgets' monitor program, but speaks
the monitor's message shapes: ``{"contents": base64}`` or
``{"error": base64}`` lines, carried base64-encoded in ``output`` frames.
Contents go out on join and on every change (identical contents are not
sent twice), and after every save or delete even when unchanged (the
monitor re-reads and sends after each write; interactive-widgets' editor
stays locked until it hears back); a save is written atomically (temporary
file, then rename) and refused above ``max_bytes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import watchfiles

from ..config import FileExecutor
from ..connections import Connection
from . import protocol as p
from .executors import Executor

if TYPE_CHECKING:
    from .room import PageRoom

log = logging.getLogger("roomhub.pages.files")


class FileView(Executor):
    kind = "file"
    config: FileExecutor

    def __init__(self, room: PageRoom, name: str, config: FileExecutor) -> None:
        super().__init__(room, name, config)
        self.digest: bytes | None = None
        self.frame: str | None = None

    @property
    def path(self) -> Path:
        return self.room.directory / self.config.path

    async def prepare(self) -> None:
        """Write the initial contents (if configured and the file is absent)."""
        if self.config.initial is not None and not self.path.exists():
            await asyncio.to_thread(atomic_write, self.path, self.config.initial.encode())

    async def start(self) -> None:
        await self.refresh()

    async def refresh(self, always: bool = False) -> None:
        """Read the file and broadcast it (or its error if it cannot be read) if it changed, or
        ``always``."""
        frame, digest = await asyncio.to_thread(self._read)
        if always or digest != self.digest:
            self.digest, self.frame = digest, frame
            self.room.broadcast(frame)

    def _read(self) -> tuple[str, bytes]:
        try:
            size = self.path.stat().st_size
            if size > self.config.max_bytes:
                msg = f"{self.config.path}: {size} bytes, over the limit of {self.config.max_bytes}"
                return p.file_error(self.name, msg), b"E" + msg.encode()
            data = self.path.read_bytes()[: self.config.max_bytes]
        except OSError as exc:
            msg = f"{self.config.path}: {exc.strerror or exc}"
            return p.file_error(self.name, msg), b"E" + msg.encode()
        return p.file_contents(self.name, data), b"C" + hashlib.sha256(data).digest()

    def state_frames(self, additions: bool) -> list[str]:
        return [self.frame] if self.frame else []

    async def handle(self, connection: Connection, message: Any) -> None:
        for request in p.decode_file(message):
            if isinstance(request, p.FileWrite):
                if len(request.contents) > self.config.max_bytes:
                    raise p.ProtocolError(
                        p.TOO_LARGE,
                        f"{len(request.contents)} bytes, over the limit of {self.config.max_bytes}",
                        self.name,
                    )
                try:
                    await asyncio.to_thread(atomic_write, self.path, request.contents)
                except OSError as exc:
                    raise p.ProtocolError(p.WRITE_FAILED, f"cannot write: {exc}", self.name) from None
                log.info("%s/%s: %d bytes saved by %s", self.room.name, self.name,
                         len(request.contents), connection.label)
            else:
                with contextlib.suppress(FileNotFoundError):
                    await asyncio.to_thread(self.path.unlink)
            await self.refresh(always=True)  # the answer to a write, as the monitor's


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (parents created; readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".roomhub-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        try:  # keep the mode of the file replaced; mkstemp's 0600 would hide it from others
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


RESCAN_AFTER = 0.3  # seconds


class RoomWatcher:
    """One watchfiles watcher per room directory, refreshing the file executors it concerns."""

    def __init__(self, directory: Path, views: list[FileView], debounce: float) -> None:
        self.directory = directory
        self.views = views
        self.debounce_ms = max(1, int(debounce * 1000))
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name=f"watch:{self.directory.name}")

    async def _watch(self) -> None:
        root = self.directory.resolve()
        try:
            async for changes in watchfiles.awatch(
                root, stop_event=self._stop, debounce=self.debounce_ms, step=20,
                recursive=True, ignore_permission_denied=True,
            ):
                changed = {Path(path) for _, path in changes}
                concerned = [v for v in self.views if self._concerns(v, changed)]
                for view in concerned:
                    await view.refresh()
                if any(p.is_dir() for p in changed) and concerned:
                    # A folder just made may get files before the watcher watches inside it:
                    # look again once the watch is surely in place.
                    await asyncio.sleep(RESCAN_AFTER)
                    for view in concerned:
                        await view.refresh()
        except Exception:
            log.exception("watcher of %s stopped", root)

    @staticmethod
    def _concerns(view: FileView, changed: set[Path]) -> bool:
        """The file itself changed, or a folder on its path appeared, moved or went away."""
        path = view.path.resolve()
        return path in changed or any(p in path.parents for p in changed)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 2.0)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
