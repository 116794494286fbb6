"""The data directory belongs to one running hub: an OS lock held for the hub's life.

A hub keeps its room directories, stores and id in ``server.data_dir`` and,
at start-up, removes what a dead run of its own left there (room
directories, Docker containers and volumes labelled with its id). A second
hub on the same data directory would take the first one's live rooms for
such leftovers, so a hub takes an exclusive ``flock(2)`` on
``<data_dir>/hub.lock`` before anything else, and keeps it until it stops;
the kernel drops it when the process dies, however it dies, so a crashed
hub's directory is free again at once. The lock file holds the holder's pid
and address (JSON), for the refusal's message.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path

LOCK_FILE = "hub.lock"


class DataDirInUse(Exception):
    """Another running hub holds the data directory; the message names it (pid, host:port)."""


class DataDirLock:
    """An exclusive lock on a data directory, held while this object is open.

    Locks are per open file: a second :meth:`acquire` in the same process is
    refused like one from another process.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: Path, host: str, port: int) -> DataDirLock:
        """Lock ``data_dir`` (made if missing) for a hub serving ``host:port`` (port 0: picked
        when it binds). Raises :class:`DataDirInUse` naming the holder, ``OSError`` if the lock
        file cannot be opened."""
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(_read(fd))
            os.close(fd)
            raise DataDirInUse(
                f"the data directory {data_dir} is in use by another hub ({holder}): a hub removes "
                "what it finds of an earlier run there, so two must not share it. Stop that hub, "
                "or give this one another data directory (--data-dir or server.data_dir)."
            ) from None
        except BaseException:
            os.close(fd)
            raise
        holder = {"pid": os.getpid(), "host": host, "port": port, "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode() + b"\n", 0)
        return cls(path, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Let another hub have the directory (idempotent)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None


def _read(fd: int) -> dict[str, object]:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(holder: dict[str, object]) -> str:
    if not holder:
        return "starting: no details yet"
    since = holder.get("since")
    when = (
        time.strftime(" since %Y-%m-%d %H:%M:%S UTC", time.gmtime(since))
        if isinstance(since, int | float) else ""
    )
    port = holder.get("port")
    where = f"{holder.get('host')}:{port}" if port else f"{holder.get('host')}, port picked at start"
    return f"pid {holder.get('pid')}, serving {where}{when}"
