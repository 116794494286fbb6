"""The opt-in file server: read, write and delete files below one root folder.

Igor's file server wrote the request body to any path it was given. Here a
path is a relative, ``/``-separated name below the root, and it is refused
(:class:`FileAccessError`) when it

- is absolute, contains ``..``, ``.``, empty parts, a backslash or a NUL (400);
- goes through a symbolic link, anywhere (403): every component is opened
  with ``O_NOFOLLOW`` relative to its parent's descriptor (``openat``, see
  :mod:`roomhub.confined`), so a link swapped in during a request cannot
  lead outside the root either;
- names something that is not there (404), is not a regular file (409), or
  is larger than ``max_bytes`` (413).

Writes go to a temporary file in the same folder, then replace the target
atomically. Blocking calls; the endpoint runs them in a thread.
"""

from __future__ import annotations

from pathlib import Path

from .. import confined
from ..confined import Refused

# The HTTP status answering each reason of a refusal.
_STATUS = {
    Refused.BAD_PATH: 400,
    Refused.MISSING: 404,
    Refused.SYMLINK: 403,
    Refused.NOT_FOLDER: 409,
    Refused.IS_FOLDER: 409,
    Refused.NOT_FILE: 409,
    Refused.TOO_LARGE: 413,
    Refused.DENIED: 403,
}


class FileAccessError(Exception):
    """A refused file request; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    @classmethod
    def of(cls, refused: Refused) -> FileAccessError:
        return cls(_STATUS[refused.reason], refused.message)


def split_path(path: str) -> list[str]:
    """The components of a relative path, or :class:`FileAccessError` (400) saying why not."""
    try:
        return confined.split_path(path)
    except Refused as exc:
        raise FileAccessError.of(exc) from None


class FileServer:
    """Files below ``root`` (created if missing), at most ``max_bytes`` each."""

    def __init__(self, root: Path, max_bytes: int, read_only: bool = False) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()
        self.max_bytes = max_bytes
        self.read_only = read_only

    def read(self, path: str) -> bytes:
        """The contents of the regular file ``path``. 404, 403 (symlink), 409 (folder), 413."""
        parts = split_path(path)
        try:
            return confined.read_file(self.root, parts, self.max_bytes)
        except Refused as exc:
            raise FileAccessError.of(exc) from None

    def write(self, path: str, data: bytes) -> bool:
        """Write ``data`` to ``path`` (folders created), atomically. True if the file is new."""
        if self.read_only:
            raise FileAccessError(405, "the file server is read-only")
        if len(data) > self.max_bytes:
            raise FileAccessError(413, f"body larger than {self.max_bytes} bytes")
        parts = split_path(path)
        try:
            return confined.write_file(self.root, parts, data)
        except Refused as exc:
            raise FileAccessError.of(exc) from None

    def delete(self, path: str) -> None:
        """Delete the file ``path`` (a symlink itself is refused, not followed). 404, 409."""
        if self.read_only:
            raise FileAccessError(405, "the file server is read-only")
        parts = split_path(path)
        try:
            deleted = confined.delete_file(self.root, parts)
        except Refused as exc:
            raise FileAccessError.of(exc) from None
        if not deleted:
            raise FileAccessError(404, "no such file")
