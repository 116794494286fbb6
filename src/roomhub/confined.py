"""File operations that stay inside one folder, whatever its other writers do to it.

A room's directory is shared with the room's programs, which may replace any
folder or file in it by a symbolic link to somewhere else on the host (``rm
-rf sub; ln -s /home sub``), at any moment. The hub works there as its own
user, outside any sandbox, so it must never follow such a link. Every
operation here starts from a descriptor of the root and walks the path one
component at a time with ``O_NOFOLLOW | O_DIRECTORY`` (``openat(2)``), then
acts on the last component relative to its folder's descriptor
(``mkdirat``, ``openat`` with ``O_CREAT | O_EXCL | O_NOFOLLOW``,
``renameat``, ``unlinkat``). A symbolic link anywhere on the path, the last
component included, is refused (:class:`Refused`), never followed, even
when it is swapped in during the operation; a folder moved away meanwhile
takes the operation with it, never elsewhere.

Paths are sequences of components (``["sub", "x.txt"]``); :func:`split_path`
makes them from a strict ``/``-separated string, :func:`parts_of` from a
configured path. Blocking calls: run them in a thread from the event loop.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_TEMP_PREFIX = ".roomhub-"


class Refused(Exception):
    """A refused file operation.

    ``reason`` is one of the constants below (what went wrong, for callers
    that map it to a status or an error code); ``message`` says it in words.
    """

    BAD_PATH = "bad-path"  # absolute, '..', '.', empty component, backslash, NUL, too long
    MISSING = "missing"  # no such file or folder
    SYMLINK = "symlink"  # a symbolic link on the path (never followed)
    NOT_FOLDER = "not-folder"  # a component on the path is not a folder
    IS_FOLDER = "is-folder"  # the file named is a folder
    NOT_FILE = "not-file"  # the file named is neither a regular file nor a folder
    TOO_LARGE = "too-large"  # over the caller's limit
    DENIED = "denied"  # any other refusal by the system (permissions, ...)

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def split_path(path: str) -> list[str]:
    """The components of a relative ``/``-separated path; :class:`Refused` (``BAD_PATH``) if it is
    empty, absolute, or has a backslash, a NUL, or a ``..``, ``.`` or empty component."""
    if not path:
        raise Refused(Refused.BAD_PATH, "empty path")
    if "\\" in path or "\x00" in path:
        raise Refused(Refused.BAD_PATH, "backslashes and NUL are not allowed in a path")
    if path.startswith("/"):
        raise Refused(Refused.BAD_PATH, "absolute paths are not allowed")
    return _checked(path.split("/"))


def parts_of(path: str) -> list[str]:
    """The components of a configured relative path, ``.`` and repeated ``/`` dropped
    (``"./a//b"`` -> ``["a", "b"]``); :class:`Refused` (``BAD_PATH``) for an absolute path or
    one with ``..``."""
    pure = PurePosixPath(path)
    if pure.is_absolute():
        raise Refused(Refused.BAD_PATH, "absolute paths are not allowed")
    return _checked(list(pure.parts))


def _checked(parts: list[str]) -> list[str]:
    for part in parts:
        if part in ("", ".", "..") or "/" in part or "\x00" in part:
            raise Refused(Refused.BAD_PATH, "'..', '.' and empty path components are not allowed")
        if len(part.encode()) > 255:
            raise Refused(Refused.BAD_PATH, "a path component is longer than 255 bytes")
    return parts


def _refusal(exc: OSError, name: str, dir_fd: int) -> Refused:
    """Why opening ``name`` in ``dir_fd`` failed, looked at without following anything."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except OSError:
        return Refused(Refused.MISSING, "No such file or directory")
    if stat.S_ISLNK(st.st_mode):
        return Refused(Refused.SYMLINK, f"{name!r} is a symbolic link: not followed")
    if exc.errno == errno.ENOTDIR:
        return Refused(Refused.NOT_FOLDER, f"{name!r} is not a folder")
    return Refused(Refused.DENIED, f"cannot open {name!r}: {exc.strerror}")


def _open_folder(name: str, dir_fd: int) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise _refusal(exc, name, dir_fd) from None


@contextlib.contextmanager
def folder(root: Path, parts: Sequence[str], create: bool = False) -> Iterator[int]:
    """A descriptor of the folder ``root/parts...``, reached without following any link.

    ``create``: make missing folders (mode 0o777 less the umask). Raises
    :class:`Refused` (``MISSING``, ``SYMLINK``, ``NOT_FOLDER``, ``DENIED``).
    ``root`` itself is the caller's and may be reached through links.
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in _checked(list(parts)):
            if create:
                try:  # mkdirat does not follow a link either: one in the way is refused below
                    os.mkdir(part, 0o777, dir_fd=fd)
                except FileExistsError:
                    pass
                except OSError as exc:
                    raise Refused(Refused.DENIED, f"cannot make folder {part!r}: {exc.strerror}") from None
            child = _open_folder(part, fd)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _split(parts: Sequence[str]) -> tuple[list[str], str]:
    checked = _checked(list(parts))
    if not checked:
        raise Refused(Refused.BAD_PATH, "the path names no file")
    return checked[:-1], checked[-1]


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    """The entry ``name`` itself (``None`` if absent); :class:`Refused` if it is a link or a folder."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise Refused(Refused.SYMLINK, f"{name!r} is a symbolic link: not followed")
    if stat.S_ISDIR(st.st_mode):
        raise Refused(Refused.IS_FOLDER, f"{name!r} is a folder")
    if not stat.S_ISREG(st.st_mode):
        raise Refused(Refused.NOT_FILE, f"{name!r} is not a regular file")
    return st


def read_file(root: Path, parts: Sequence[str], max_bytes: int) -> bytes:
    """The contents of the regular file ``root/parts...``, at most ``max_bytes`` bytes.

    Raises :class:`Refused`: ``MISSING``, ``SYMLINK``, ``NOT_FOLDER``,
    ``IS_FOLDER``, ``NOT_FILE`` (a FIFO, a device...: never opened for
    blocking), ``TOO_LARGE`` (message: "N bytes, over the limit of M"),
    ``DENIED``.
    """
    folders, name = _split(parts)
    with folder(root, folders) as dir_fd:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
        except FileNotFoundError:
            raise Refused(Refused.MISSING, "No such file or directory") from None
        except OSError as exc:
            raise _refusal(exc, name, dir_fd) from None
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise Refused(Refused.IS_FOLDER, f"{name!r} is a folder")
            if not stat.S_ISREG(st.st_mode):
                raise Refused(Refused.NOT_FILE, f"{name!r} is not a regular file")
            if st.st_size > max_bytes:
                raise Refused(Refused.TOO_LARGE, f"{st.st_size} bytes, over the limit of {max_bytes}")
        except BaseException:
            os.close(fd)
            raise
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew since fstat
        raise Refused(Refused.TOO_LARGE, f"more than {max_bytes} bytes, over the limit")
    return data


def write_file(root: Path, parts: Sequence[str], data: bytes, *, keep_existing: bool = False) -> bool:
    """Write ``data`` to ``root/parts...`` atomically (a temporary file in the same folder, then
    a rename), making missing folders. True if the file is new.

    A replaced file keeps its mode; a new one gets 0o666 less the umask.
    ``keep_existing``: leave an existing file as it is (and return False).
    Raises :class:`Refused` (``SYMLINK`` for a link on the path or in place of
    the file, ``NOT_FOLDER``, ``IS_FOLDER``, ``NOT_FILE``, ``DENIED``) and
    ``OSError`` for a failed write (``ENOSPC``, ``EDQUOT``...).
    """
    folders, name = _split(parts)
    with folder(root, folders, create=True) as dir_fd:
        existing = _lstat(name, dir_fd)
        if existing is not None and keep_existing:
            return False
        tmp = f"{_TEMP_PREFIX}{os.urandom(6).hex()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666,
                     dir_fd=dir_fd)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                if existing is not None:
                    os.fchmod(fh.fileno(), stat.S_IMODE(existing.st_mode))
            # renameat follows no link: one swapped in for the file meanwhile is replaced, not written to
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
    return existing is None


def delete_file(root: Path, parts: Sequence[str]) -> bool:
    """Delete the file ``root/parts...``; False if it was not there (nor its folder).

    Raises :class:`Refused` (``SYMLINK``: a link is neither followed nor
    removed, ``NOT_FOLDER``, ``IS_FOLDER``, ``NOT_FILE``, ``DENIED``).
    """
    folders, name = _split(parts)
    try:
        with folder(root, folders) as dir_fd:
            if _lstat(name, dir_fd) is None:
                return False
            try:
                os.unlink(name, dir_fd=dir_fd)  # unlinkat: a link swapped in meanwhile goes, not its target
            except FileNotFoundError:
                return False
    except Refused as exc:
        if exc.reason == Refused.MISSING:
            return False
        raise
    return True


def make_folders(root: Path, parts: Sequence[str]) -> None:
    """Make the folder ``root/parts...`` and its missing parents, without following any link.

    Raises :class:`Refused` (``SYMLINK``, ``NOT_FOLDER``, ``DENIED``).
    """
    with folder(root, parts, create=True):
        pass
