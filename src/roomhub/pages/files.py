"""File executors: a file of the room directory, pushed to viewers, written by editors.

The hub watches the room's folders on the files' paths itself (watchfiles,
one watcher per room) instead of running interactive-widgets' monitor
program, but speaks the monitor's message shapes: ``{"contents": base64}``
or ``{"error": base64}`` lines, carried base64-encoded in ``output`` frames.
Contents go out on join and on every change (identical contents are not
sent twice), and after every save or delete even when unchanged (the
monitor re-reads and sends after each write; interactive-widgets' editor
stays locked until it hears back); a save is written atomically (temporary
file, then rename) and refused above ``max_bytes``.

The room's programs share the directory and may put symbolic links
anywhere in it; every read, write and delete goes through
:mod:`roomhub.confined`, so a link on a file's path is refused (an error
line to viewers, a ``path-refused`` error frame to an editor), never
followed out of the room, and the watcher watches no folder through a link.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import stat
from pathlib import Path
from typing import Any

import watchfiles

from .. import confined
from ..transport.callback_websocket import CallbackWebSocket
from . import protocol as p
from .config import FileExecutor
from .context import ExecutorRoom
from .executors import AlwaysRunner, Executor, OnceRunner, StepRunner

log = logging.getLogger("roomhub.pages.files")


class FileView(Executor):
    kind = "file"
    config: FileExecutor

    def __init__(self, room: ExecutorRoom, name: str, config: FileExecutor) -> None:
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

    async def refresh(self, always: bool = False) -> None:
        """Read the file and broadcast it (or its error if it cannot be read) if it changed, or
        ``always``."""
        frame, digest = await asyncio.to_thread(self._read)
        if always or digest != self.digest:
            self.digest, self.frame = digest, frame
            self.room.broadcast(frame)

    def _read(self) -> tuple[str, bytes]:
        try:
            data = confined.read_file(self.room.directory, self.parts, self.config.max_bytes)
        except (confined.Refused, OSError) as exc:
            msg = f"{self.config.path}: {exc}"
            return p.file_error(self.name, msg), b"E" + msg.encode()
        return p.file_contents(self.name, data), b"C" + hashlib.sha256(data).digest()

    def state_frames(self, additions: bool) -> list[str]:
        return [self.frame] if self.frame else []

    async def handle(self, connection: CallbackWebSocket, message: Any) -> None:
        """Apply a client's monitor lines: a save (atomic) or a delete of the file.

        Raises :class:`protocol.ProtocolError`: ``too-large`` over ``max_bytes``,
        ``path-refused`` when a symbolic link (or a file where a folder should
        be) is on the file's path, ``write-failed`` for any other failure.
        """
        for request in p.decode_file(message, self.room.ctx.max_json_depth):
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
            await self.refresh(always=True)  # the answer to a write, as the monitor's

    async def _change(self, connection: CallbackWebSocket, what: str, operation: Any, *args: Any) -> None:
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


LOOK_AGAIN_AFTER = (0.3, 0.7, 2.0)  # seconds between looks after a watch round starts


class RoomWatcher:
    """Watches the room's folders on its file executors' paths, and refreshes the executors a
    change concerns.

    Each folder on a path (the room directory itself, ``sub`` for ``sub/x.txt``) is watched on
    its own, not the room's whole tree: the room's programs make any tree they like, links
    included, and a recursive watch follows links (watchfiles cannot be told not to), so a link
    to ``/`` would have the hub walk and watch the host's file system. A folder that is a link
    is not watched. When a folder on a path appears, moves or goes, the watch starts anew.
    """

    def __init__(self, directory: Path, views: list[FileView], debounce: float) -> None:
        self.directory = directory
        self.views = views
        self.debounce_ms = max(1, int(debounce * 1000))
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._round = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name=f"watch:{self.directory.name}")

    def _folders(self, root: Path) -> tuple[list[Path], set[Path]]:
        """The folders to watch (those on the views' paths that are real folders now, not links)
        and every folder the paths name (whose change restarts the watch)."""
        watched, named = {root}, set()
        for view in self.views:
            folder, real = root, True
            for part in view.parts[:-1]:
                folder = folder / part
                named.add(folder)
                real = real and _is_folder(folder)
                if real:
                    watched.add(folder)
        return sorted(watched), named

    async def _watch(self) -> None:
        root = self.directory.resolve()
        try:
            while not self._stop.is_set():
                folders, named = await asyncio.to_thread(self._folders, root)
                self._round = asyncio.Event()
                # Files may land in a new folder, or a folder under it appear, before this
                # round's watch is in place (watchfiles does not say when it is): look again.
                check = asyncio.create_task(self._look_again(root, folders, self._round))
                try:
                    await self._watch_folders(root, folders, named, self._round)
                except FileNotFoundError:  # a folder went between listing and watching
                    pass
                finally:
                    check.cancel()
        except Exception:
            log.exception("watcher of %s stopped", root)

    async def _watch_folders(
        self, root: Path, folders: list[Path], named: set[Path], round_over: asyncio.Event
    ) -> None:
        """Watch ``folders`` until one of ``named`` changes or ``round_over`` is set."""
        async for changes in watchfiles.awatch(
            *folders, stop_event=round_over, debounce=self.debounce_ms, step=20,
            recursive=False, ignore_permission_denied=True,
        ):
            changed = {Path(path) for _, path in changes}
            for view in self.views:
                if self._concerns(root, view, changed):
                    await view.refresh()
            if changed & named:
                return

    async def _look_again(self, root: Path, folders: list[Path], round_over: asyncio.Event) -> None:
        """Refresh every view a few times after a round starts, and start a new round when the
        folders to watch are no longer those the round watches (one appeared unseen)."""
        for delay in LOOK_AGAIN_AFTER:
            await asyncio.sleep(delay)
            for view in self.views:
                await view.refresh()
            if (await asyncio.to_thread(self._folders, root))[0] != folders:
                round_over.set()
                return

    @staticmethod
    def _concerns(root: Path, view: FileView, changed: set[Path]) -> bool:
        """The file itself changed, or a folder on its path appeared, moved or went away.

        Compared by name: contents are read by :func:`confined.read_file`, never through a link.
        """
        path = root.joinpath(*view.parts)
        return path in changed or any(p in path.parents for p in changed)

    async def stop(self) -> None:
        self._stop.set()
        self._round.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 2.0)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()


def _is_folder(path: Path) -> bool:
    """A folder itself, not a link to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def make_executor(room: ExecutorRoom, name: str, config: Any) -> Executor:
    """The executor of kind ``config.type`` (always, once, prologue, epilogue, file) in ``room``."""
    kinds: dict[str, type[Executor]] = {
        "always": AlwaysRunner,
        "once": OnceRunner,
        "prologue": StepRunner,
        "epilogue": StepRunner,
        "file": FileView,
    }
    return kinds[config.type](room, name, config)
