"""A pids cgroup per sandboxed program, so that ``limits.pids`` really holds.

``RLIMIT_NPROC`` counts processes per user and is not enforced for root,
which is what a sandbox's user maps to when the hub runs as root; a pids
cgroup works for any user. Both hierarchies are handled:

- cgroup v1: the ``pids`` controller's mount (``/sys/fs/cgroup/pids``);
- cgroup v2: the hub's own cgroup if ``pids`` is available there and can be
  enabled for children (a delegated subtree, e.g. a systemd unit with
  ``Delegate=yes``).

Layout: ``<base>/roomhub-<hub id>/<program id>`` with ``pids.max`` set. A
program joins its cgroup in the child before ``exec`` (see
:func:`roomhub.runtimes.process.spawn`), so every process it starts is
counted from the first fork.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("roomhub.runtimes.cgroups")


def _mounts() -> list[tuple[str, str, set[str]]]:
    """``(mount point, type, options)`` of every cgroup mount of this process."""
    found = []
    with open("/proc/self/mounts", encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 4 and parts[2] in ("cgroup", "cgroup2"):
                found.append((parts[1].replace("\\040", " "), parts[2], set(parts[3].split(","))))
    return found


def _own_paths() -> dict[str, str]:
    """This process's cgroup path per controller (``""`` is the v2 unified hierarchy)."""
    paths: dict[str, str] = {}
    with open("/proc/self/cgroup", encoding="utf-8") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                paths[controller] = path
    return paths


def find_pids_base() -> tuple[Path | None, str, str]:
    """Where this process may create pids cgroups: ``(directory, version, reason if none)``."""
    mounts = _mounts()
    own = _own_paths()
    for mount, kind, options in mounts:
        if kind == "cgroup" and "pids" in options:
            return Path(mount) / own.get("pids", "/").lstrip("/"), "v1", ""
    for mount, kind, _ in mounts:
        if kind != "cgroup2":
            continue
        base = Path(mount) / own.get("", "/").lstrip("/")
        try:
            controllers = (base / "cgroup.controllers").read_text().split()
        except OSError:
            continue
        if "pids" not in controllers:
            return (
                None,
                "",
                f"cgroup v2 at {base} offers no pids controller"
                f" (it offers: {' '.join(controllers) or 'none'})",
            )
        return base, "v2", ""
    return None, "", "no cgroup hierarchy with a pids controller is mounted"


class PidsCgroups:
    """Creates, fills and removes the per-program pids cgroups of one hub."""

    def __init__(self, parent: Path, version: str) -> None:
        self.parent = parent
        self.version = version

    @classmethod
    def open(cls, hub_id: str) -> PidsCgroups:
        """Find a usable hierarchy and make this hub's parent cgroup.

        Raises ``OSError`` with the reason when none is usable.
        """
        base, version, reason = find_pids_base()
        if base is None:
            raise OSError(reason)
        parent = base / f"roomhub-{hub_id}"
        parent.mkdir(exist_ok=True)
        if version == "v2":
            try:
                subtree = (base / "cgroup.subtree_control").read_text().split()
                if "pids" not in subtree:
                    (base / "cgroup.subtree_control").write_text("+pids")
                (parent / "cgroup.subtree_control").write_text("+pids")
            except OSError as exc:
                with contextlib.suppress(OSError):
                    parent.rmdir()
                raise OSError(
                    f"cannot enable the pids controller under {base} ({exc.strerror}); "
                    "delegate a cgroup v2 subtree to the hub (systemd: Delegate=yes)"
                ) from None
        probe = parent / f"probe-{uuid.uuid4().hex[:8]}"
        probe.mkdir()
        try:
            if not (probe / "pids.max").exists():
                raise OSError(f"{probe} has no pids.max")
        finally:
            probe.rmdir()
        return cls(parent, version)

    def create(self, limit: int) -> Path:
        """A new cgroup allowing at most ``limit`` processes (threads count)."""
        path = self.parent / uuid.uuid4().hex[:16]
        path.mkdir()
        (path / "pids.max").write_text(str(limit))
        return path

    @staticmethod
    def joiner(path: Path) -> Callable[[], None]:
        """A function for the child (before ``exec``) that moves it into ``path``."""
        procs = os.fsencode(path / "cgroup.procs")

        def join() -> None:
            fd = os.open(procs, os.O_WRONLY)
            try:
                os.write(fd, str(os.getpid()).encode())
            finally:
                os.close(fd)

        return join

    @staticmethod
    def _remove_now(path: Path, deadline: float) -> bool:
        while True:
            try:
                pids = (path / "cgroup.procs").read_text().split()
            except FileNotFoundError:
                return True
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            try:
                path.rmdir()
                return True
            except FileNotFoundError:
                return True
            except OSError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.01)

    async def remove(self, path: Path, timeout: float = 3.0) -> None:
        """Kill whatever is left in ``path`` and remove it (logged if it stays busy)."""
        ok = await asyncio.to_thread(self._remove_now, path, time.monotonic() + timeout)
        if not ok:
            log.warning("cgroup %s still busy after %.1f s; left in place", path, timeout)

    def remove_all(self, keep_parent: bool = True) -> int:
        """Remove every program cgroup of this hub (leftovers of a crash); returns the count."""
        count = 0
        with contextlib.suppress(FileNotFoundError):
            for child in self.parent.iterdir():
                if child.is_dir() and self._remove_now(child, time.monotonic() + 3.0):
                    count += 1
        if not keep_parent:
            with contextlib.suppress(OSError):
                self.parent.rmdir()
        return count
