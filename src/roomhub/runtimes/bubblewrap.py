"""The ``bubblewrap`` runtime: a subprocess sandboxed by ``bwrap`` (Debian package ``bubblewrap``).

Each program gets its own user, pid, ipc, uts, cgroup and (unless
``runtime.bubblewrap.network``) network namespaces, no capabilities, and
``--die-with-parent`` so that nothing outlives the hub. Of the host it sees
an allow-list, read-only: ``ro_binds`` and ``extra_ro_binds`` (the system's
programs and libraries and a curated part of ``/etc``; ``/etc/resolv.conf``
too with the network on), and the room directory read-write at
``room_mount`` (the working directory is inside it). Everything else is
absent: other rooms and the hub's data, ``/home``, ``/root``, ``/var``,
``/run``, the rest of ``/etc`` (``shadow``, ``gshadow``, ``sudoers``, keys).
That matters most when the hub runs as root: the sandbox's user is then
root outside, and the file permissions it meets would not stop it.
``/etc/passwd``, ``/etc/group`` and ``/etc/hosts`` are generated (the
sandbox's user ``room``, root, nobody). The root is read-only; ``/tmp`` and
``/dev/shm`` are tmpfs mounts of ``tmpfs_bytes`` and ``shm_bytes`` (their
files are memory that ``memory_bytes`` does not count), the rest of
``/dev`` is read-only, ``/proc`` is the sandbox's own.

Limits: memory (address space), CPU seconds and file size are rlimits set
before ``exec`` (inherited by everything in the sandbox); the number of
processes is a pids cgroup (:mod:`roomhub.runtimes.cgroups`) when one is
usable, otherwise it is not enforced and the start-up log says so. The
room's disk space is the room quota (:mod:`roomhub.runtimes.quota`).

The handle is the ``process`` runtime's (:func:`roomhub.runtimes.process.spawn`):
pseudo-terminal or pipes, process group, kill with a grace period.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import shutil
from pathlib import Path, PurePosixPath

from ..core.config import BubblewrapConfig
from .base import ProgramHandle, ProgramSpec, Runtime, RuntimeUnavailable
from .cgroups import PidsCgroups
from .process import spawn
from .quota import ROOM_QUOTAS

log = logging.getLogger("roomhub.runtimes.bubblewrap")

INSTALL_HINT = "install it with `apt-get install bubblewrap` (Debian/Ubuntu) or `dnf install bubblewrap`"


def data_fd(contents: bytes) -> int:
    """A readable pipe holding ``contents`` (at most a pipe's buffer, 64 KiB on Linux), for bwrap to read."""
    read, write = os.pipe()
    try:
        os.write(write, contents)
    except BaseException:
        os.close(read)
        raise
    finally:
        os.close(write)
    return read


def is_within(path: str, folder: str) -> bool:
    """Whether the absolute, normalised ``path`` is ``folder`` or lies below it."""
    return os.path.commonpath([path, folder]) == folder


def parse_user(user: str | None, default_uid: int, default_gid: int) -> tuple[int, int]:
    """``"uid[:gid]"`` -> ``(uid, gid)``; raises :class:`RuntimeUnavailable` for names."""
    if not user:
        return default_uid, default_gid
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise RuntimeUnavailable(f'bubblewrap needs a numeric user ("uid[:gid]"), got {user!r}')
    return int(uid), int(gid) if gid else int(uid)


class BubblewrapRuntime(Runtime):
    """Sandboxed subprocesses through ``bwrap``."""

    name = "bubblewrap"

    def __init__(self, config: BubblewrapConfig, hub_id: str = "local") -> None:
        self.config = config
        self.hub_id = hub_id
        self._cgroups: PidsCgroups | None = None
        self._cgroups_tried = False

    # -- set-up ---------------------------------------------------------------------------

    def executable(self) -> str:
        """The ``bwrap`` path; raises :class:`RuntimeUnavailable` with the install hint."""
        path = shutil.which(self.config.executable)
        if path is None:
            raise RuntimeUnavailable(f"{self.config.executable!r} not found on PATH; {INSTALL_HINT}")
        return path

    async def check(self) -> None:
        """Run a trivial sandbox once, and set up the pids cgroup (or log why not)."""
        argv = [
            *self.sandbox_args(self.executable(), "/", "/", tty=False, uid=1000, gid=1000),
            "true",
        ]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeUnavailable(
                f"bwrap cannot create its namespaces here ({err.decode(errors='replace').strip()});"
                " unprivileged user namespaces may be disabled"
                " (sysctl kernel.unprivileged_userns_clone=1)"
            )
        self.cgroups()

    def cgroups(self) -> PidsCgroups | None:
        """The hub's pids cgroups, set up on first use (``None``: pids limit not enforced)."""
        if not self._cgroups_tried:
            self._cgroups_tried = True
            if not self.config.pids_cgroup:
                log.info("bubblewrap: pids limit disabled (runtime.bubblewrap.pids_cgroup = false)")
            else:
                try:
                    self._cgroups = PidsCgroups.open(self.hub_id)
                except OSError as exc:
                    log.warning(
                        "bubblewrap: pids limit NOT enforced: no usable pids cgroup (%s); "
                        "memory, CPU time and file size limits still apply",
                        exc,
                    )
                else:
                    log.info(
                        "bubblewrap: pids limits enforced with cgroup %s %s",
                        self._cgroups.version,
                        self._cgroups.parent,
                    )
        return self._cgroups

    def visible_paths(self, network: bool) -> list[str]:
        """The host paths the sandbox sees (read-only): ``ro_binds`` and ``extra_ro_binds`` with
        their patterns expanded, plus ``/etc/resolv.conf`` with the network on; missing ones are left out."""
        c = self.config
        patterns = [*c.ro_binds, *c.extra_ro_binds, *(["/etc/resolv.conf"] if network else [])]
        paths: list[str] = []
        for pattern in patterns:
            for found in sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]:
                path = os.path.normpath(found)
                if path not in paths and os.path.lexists(path):
                    paths.append(path)
        return paths

    def sandbox_args(
        self,
        bwrap: str,
        room_dir: str,
        workdir: str,
        *,
        tty: bool,
        uid: int,
        gid: int,
        network: bool = False,
        data: dict[str, int] | None = None,
    ) -> list[str]:
        """The ``bwrap`` command line up to (not including) the program's argv.

        ``data`` maps a path inside to a readable file descriptor whose
        contents become that read-only file (``--ro-bind-data``: the
        generated ``/etc/passwd``, ``/etc/group``, ``/etc/hosts``).
        """
        c = self.config
        network = c.network or network
        args = [
            bwrap,
            "--unshare-user",
            "--uid",
            str(uid),
            "--gid",
            str(gid),
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--hostname",
            c.hostname,
            "--unshare-cgroup-try",
            "--die-with-parent",
            "--cap-drop",
            "ALL",
        ]
        if not network:
            args.append("--unshare-net")
        if not tty:
            args.append("--new-session")  # no controlling terminal to push input into (TIOCSTI)
        paths = self.visible_paths(network)
        folders = [p for p in paths if os.path.isdir(p) and not os.path.islink(p)]
        for path in paths:
            if not os.path.islink(path):
                args += ["--ro-bind", path, path]
                continue
            # A link into a bound folder stays a link (/bin -> usr/bin); one that leads out of
            # the sandbox (/etc/resolv.conf -> /run/...) is replaced by what it points to.
            real = os.path.realpath(path)
            if any(is_within(real, folder) for folder in folders):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.exists(real):
                args += ["--ro-bind", real, path]
        for inside, fd in (data or {}).items():
            args += ["--ro-bind-data", str(fd), inside]
        args += [
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            # /dev is a writable tmpfs of its own: without this a program could fill memory there.
            "--size",
            str(c.shm_bytes),
            "--tmpfs",
            "/dev/shm",
            "--remount-ro",
            "/dev",
            "--size",
            str(c.tmpfs_bytes),
            "--tmpfs",
            "/tmp",
            "--bind",
            room_dir,
            c.room_mount,
            "--remount-ro",
            "/",
            "--chdir",
            workdir,
        ]
        return args

    def etc_files(self, uid: int, gid: int) -> dict[str, bytes]:
        """``/etc/passwd``, ``/etc/group`` and ``/etc/hosts`` of a sandbox, naming only its own user
        (``room``, at home in the room), root and nobody: the host's users stay unknown."""
        c = self.config
        users = {
            0: "root:x:0:0:root:/root:/bin/sh",
            65534: "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
        }
        users[uid] = f"room:x:{uid}:{gid}:room:{c.room_mount}:/bin/bash"
        groups = {0: "root:x:0:", 65534: "nogroup:x:65534:"}
        groups[gid] = f"room:x:{gid}:"
        hosts = f"127.0.0.1\tlocalhost\n127.0.1.1\t{c.hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        return {
            "/etc/passwd": "".join(line + "\n" for line in users.values()).encode(),
            "/etc/group": "".join(line + "\n" for line in groups.values()).encode(),
            "/etc/hosts": hosts.encode(),
        }

    def room_seen_through(self, room_dir: Path) -> str | None:
        """A visible path that holds ``room_dir`` (then the sandbox would see the other rooms)."""
        for path in self.visible_paths(True):
            if is_within(str(room_dir), os.path.realpath(path)):
                return path
        return None

    # -- programs ---------------------------------------------------------------------------

    async def start(self, spec: ProgramSpec) -> ProgramHandle:
        """Start ``spec.argv`` in a fresh sandbox, under the room quota.

        Raises :class:`RuntimeUnavailable` when ``bwrap`` is missing, the
        user is not numeric or the room directory lies inside a path the
        sandbox sees; ``OSError`` when the program cannot start.
        """
        bwrap = self.executable()
        uid, gid = parse_user(spec.container.user, self.config.uid, self.config.gid)
        room_dir = spec.room_dir.resolve()
        seen_through = self.room_seen_through(room_dir)
        if seen_through is not None:
            raise RuntimeUnavailable(
                f"the room directory {room_dir} is inside {seen_through}, which the sandbox sees "
                "(runtime.bubblewrap.ro_binds / extra_ro_binds): other rooms would be visible; "
                "move server.data_dir out of it"
            )
        relative = spec.make_working_directory().relative_to(spec.room_dir)
        inside = str(PurePosixPath(self.config.room_mount) / relative)
        data = {path: data_fd(contents) for path, contents in self.etc_files(uid, gid).items()}
        try:
            argv = [
                *self.sandbox_args(
                    bwrap,
                    str(room_dir),
                    inside,
                    tty=spec.tty,
                    uid=uid,
                    gid=gid,
                    network=spec.container.network == "host",
                    data=data,
                ),
                "--",
                *spec.argv,
            ]
            handle = await self._spawn(argv, spec, list(data.values()))
        finally:
            for fd in data.values():
                os.close(fd)
        return ROOM_QUOTAS.guard(handle, spec)

    async def _spawn(self, argv: list[str], spec: ProgramSpec, pass_fds: list[int]) -> ProgramHandle:
        """Run ``argv`` (``bwrap ... -- program``) in the program's pids cgroup when there is one."""
        env = spec.base_env(self.config.room_mount)
        cgroups = self.cgroups() if spec.limits.pids else None
        if cgroups is None:
            return await spawn(argv, spec, env, spec.room_dir, pass_fds=pass_fds)
        assert spec.limits.pids is not None
        group = await asyncio.to_thread(cgroups.create, spec.limits.pids)

        async def release() -> None:
            await cgroups.remove(group)

        try:
            return await spawn(
                argv,
                spec,
                env,
                spec.room_dir,
                before_exec=PidsCgroups.joiner(group),
                on_exit=release,
                pass_fds=pass_fds,
            )
        except BaseException:
            await release()
            raise

    async def cleanup_orphans(self, hub_id: str) -> None:
        """Remove pids cgroups a crashed run left (their programs died with the hub)."""
        cgroups = self.cgroups()
        if cgroups is not None:
            count = await asyncio.to_thread(cgroups.remove_all)
            if count:
                log.info("bubblewrap: removed %d cgroups left by an earlier run", count)

    async def close(self) -> None:
        if self._cgroups is not None:
            await asyncio.to_thread(self._cgroups.remove_all, False)
