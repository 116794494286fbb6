"""File executors: a file of the room directory, pushed to viewers, written by editors.

The hub watches the room directory itself (watchfiles, one watcher per
room) instead of running interactive-widgets' monitor program, but speaks
the monitor's message shapes: ``{"contents": base64}`` or
``{"error": base64}`` lines, carried base64-encoded in ``output`` frames.
Contents go out on join and on every change (identical contents are not
sent twice); a save is written atomically (temporary file, then rename) and
refused above ``max_bytes``.

The room's programs share the directory and may put symbolic links
anywhere in it; every read, write and delete goes through
:mod:`roomhub.confined`, so a link on a file's path is refused (an error
line to viewers, a ``path-refused`` error frame to an editor), never
followed out of the room.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import watchfiles

from .. import confined
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
        self.parts = confined.parts_of(config.path)

    @property
    def path(self) -> Path:
        """Where the file is, by name: never resolved, the room's programs may have put links there."""
        return self.room.directory.joinpath(*self.parts)

    async def prepare(self) -> None:
        """Write the initial contents (if configured and the file is absent)."""
        if self.config.initial is not None:
            try:
                await asyncio.to_thread(
                    confined.write_file, self.room.directory, self.parts, self.config.initial.encode(),
                    keep_existing=True,
                )
            except confined.Refused as exc:
                log.warning("%s/%s: initial contents not written: %s", self.room.name, self.name, exc)

    async def start(self) -> None:
        await self.refresh()

    async def refresh(self) -> None:
        """Read the file and broadcast it if it changed (or its error if it cannot be read)."""
        frame, digest = await asyncio.to_thread(self._read)
        if digest != self.digest:
            self.digest, self.frame = digest, frame
            self.room.broadcast(frame)

    def _read(self) -> tuple[str, bytes]:
        try:
            data = confined.read_file(self.room.directory, self.parts, self.config.max_bytes)
        except (confined.Refused, OSError) as exc:
            msg = f"{self.config.path}: {exc}"
            return p.file_error(self.name, msg), b"E" + msg.encode()
        return p.file_contents(self.name, data), b"C" + hashlib.sha256(data).digest()

    def state_frames(self) -> list[str]:
        return [self.frame] if self.frame else []

    async def handle(self, connection: Connection, message: Any) -> None:
        """Apply a client's monitor lines: a save (atomic) or a delete of the file.

        Raises :class:`protocol.ProtocolError`: ``too-large`` over ``max_bytes``,
        ``path-refused`` when a symbolic link (or a file where a folder should
        be) is on the file's path, ``write-failed`` for any other failure.
        """
        for request in p.decode_file(message):
            if isinstance(request, p.FileWrite):
                if len(request.contents) > self.config.max_bytes:
                    raise p.ProtocolError(
                        p.TOO_LARGE,
                        f"{len(request.contents)} bytes, over the limit of {self.config.max_bytes}",
                        self.name,
                    )
                await self._change(connection, "save", confined.write_file, request.contents)
                log.info("%s/%s: %d bytes saved by %s", self.room.name, self.name,
                         len(request.contents), connection.label)
            else:
                await self._change(connection, "delete", confined.delete_file)
            await self.refresh()  # the watcher would too; answering now keeps saves snappy

    async def _change(self, connection: Connection, what: str, operation: Any, *args: Any) -> None:
        """Run ``operation(room directory, parts, *args)`` in a thread; a refusal is a ProtocolError."""
        try:
            await asyncio.to_thread(operation, self.room.directory, self.parts, *args)
        except confined.Refused as exc:
            if exc.reason in (confined.Refused.SYMLINK, confined.Refused.NOT_FOLDER):
                # A room's program put a link (or a file) on the way: maybe an attack, worth a warning.
                log.warning("%s/%s: %s by %s refused: %s", self.room.name, self.name, what,
                            connection.label, exc)
                raise p.ProtocolError(p.PATH_REFUSED, f"{self.config.path}: {exc}", self.name) from None
            raise p.ProtocolError(p.WRITE_FAILED, f"cannot {what}: {exc}", self.name) from None
        except OSError as exc:
            raise p.ProtocolError(p.WRITE_FAILED, f"cannot {what}: {exc}", self.name) from None


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
                concerned = [v for v in self.views if self._concerns(root, v, changed)]
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
    def _concerns(root: Path, view: FileView, changed: set[Path]) -> bool:
        """The file itself changed, or a folder on its path appeared, moved or went away.

        Compared by name: the watcher follows links the room's programs made (watchfiles cannot
        be told not to), and what it reports under them concerns the view only to show the
        refusal; contents are read by :func:`confined.read_file`, never through a link.
        """
        path = root.joinpath(*view.parts)
        return path in changed or any(p in path.parents for p in changed)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 2.0)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
