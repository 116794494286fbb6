"""The opt-in file server: read, write and delete files below one root folder.

Igor's file server wrote the request body to any path it was given. Here a
path is a relative, ``/``-separated name below the root, and it is refused
(:class:`FileAccessError`) when it

- is absolute, contains ``..``, ``.``, empty parts, a backslash or a NUL (400);
- goes through a symbolic link, anywhere (403): every component is opened
  with ``O_NOFOLLOW`` relative to its parent's descriptor (``openat``), so a
  link swapped in during a request cannot lead outside the root either;
- names something that is not a regular file (404 or 409), or is larger
  than ``max_bytes`` (413).

Writes go to a temporary file in the same folder, then replace the target
atomically. Blocking calls; the endpoint runs them in a thread.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class FileAccessError(Exception):
    """A refused file request; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def split_path(path: str) -> list[str]:
    """The components of a relative path, or :class:`FileAccessError` (400) saying why not."""
    if not path:
        raise FileAccessError(400, "empty path")
    if "\\" in path or "\x00" in path:
        raise FileAccessError(400, "backslashes and NUL are not allowed in a path")
    if path.startswith("/"):
        raise FileAccessError(400, "absolute paths are not allowed")
    parts = path.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise FileAccessError(400, "'..', '.' and empty path components are not allowed")
        if len(part.encode()) > 255:
            raise FileAccessError(400, "a path component is longer than 255 bytes")
    return parts


class FileServer:
    """Files below ``root`` (created if missing), at most ``max_bytes`` each."""

    def __init__(self, root: Path, max_bytes: int, read_only: bool = False) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()
        self.max_bytes = max_bytes
        self.read_only = read_only

    @contextlib.contextmanager
    def _folder(self, parts: list[str], create: bool = False) -> Iterator[int]:
        """A descriptor of the folder ``parts`` below the root, never through a symlink."""
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            for part in parts:
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise FileAccessError(404, "no such file") from None
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o755, dir_fd=fd)
                    child = self._open_dir(part, fd)
                except OSError as exc:
                    raise self._refusal(exc, part, fd) from None
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)

    def _open_dir(self, part: str, fd: int) -> int:
        try:
            return os.open(part, _DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            raise self._refusal(exc, part, fd) from None

    @staticmethod
    def _refusal(exc: OSError, part: str, fd: int) -> FileAccessError:
        try:
            st = os.lstat(part, dir_fd=fd)
        except OSError:
            return FileAccessError(404, "no such file")
        if stat.S_ISLNK(st.st_mode):
            return FileAccessError(403, "symbolic links are not followed")
        if exc.errno == errno.ENOTDIR:
            return FileAccessError(409, f"{part!r} is not a folder")
        return FileAccessError(403, f"cannot open {part!r}: {exc.strerror}")

    def read(self, path: str) -> bytes:
        """The contents of the regular file ``path``. 404, 403 (symlink), 409 (folder), 413."""
        *folders, name = split_path(path)
        with self._folder(folders) as dir_fd:
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
            except FileNotFoundError:
                raise FileAccessError(404, "no such file") from None
            except OSError as exc:
                raise self._refusal(exc, name, dir_fd) from None
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > self.max_bytes:
                os.close(fd)
                if stat.S_ISDIR(st.st_mode):
                    raise FileAccessError(409, "is a folder")
                if not stat.S_ISREG(st.st_mode):
                    raise FileAccessError(403, "not a regular file")
                raise FileAccessError(413, f"file larger than {self.max_bytes} bytes")
            with os.fdopen(fd, "rb") as f:
                data = f.read(self.max_bytes + 1)
        if len(data) > self.max_bytes:
            raise FileAccessError(413, f"file larger than {self.max_bytes} bytes")
        return data

    def write(self, path: str, data: bytes) -> bool:
        """Write ``data`` to ``path`` (folders created), atomically. True if the file is new."""
        if self.read_only:
            raise FileAccessError(405, "the file server is read-only")
        if len(data) > self.max_bytes:
            raise FileAccessError(413, f"body larger than {self.max_bytes} bytes")
        *folders, name = split_path(path)
        with self._folder(folders, create=True) as dir_fd:
            try:
                st = os.lstat(name, dir_fd=dir_fd)
            except FileNotFoundError:
                created = True
            else:
                created = False
                if stat.S_ISLNK(st.st_mode):
                    raise FileAccessError(403, "symbolic links are not followed")
                if not stat.S_ISREG(st.st_mode):
                    raise FileAccessError(409, "not a regular file")
            tmp = f".{name[:200]}.{secrets.token_hex(4)}.tmp"
            fd = os.open(
                tmp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o644,
                dir_fd=dir_fd,
            )
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=dir_fd)
                raise
        return created

    def delete(self, path: str) -> None:
        """Delete the file ``path`` (a symlink itself is refused, not followed). 404, 409."""
        if self.read_only:
            raise FileAccessError(405, "the file server is read-only")
        *folders, name = split_path(path)
        with self._folder(folders) as dir_fd:
            try:
                st = os.lstat(name, dir_fd=dir_fd)
            except FileNotFoundError:
                raise FileAccessError(404, "no such file") from None
            if stat.S_ISLNK(st.st_mode):
                raise FileAccessError(403, "symbolic links are not followed")
            if stat.S_ISDIR(st.st_mode):
                raise FileAccessError(409, "is a folder")
            os.unlink(name, dir_fd=dir_fd)
