"""The ``bubblewrap`` runtime: a subprocess sandboxed by ``bwrap`` (Debian package ``bubblewrap``).

Each program gets its own user, pid, ipc, uts, cgroup and (unless
``runtime.bubblewrap.network``) network namespaces, a read-only view of the
system directories (``ro_binds``, with ``masked`` secrets hidden), the room
directory read-write at ``room_mount`` (the working directory is inside it),
a private ``/tmp``, fresh ``/proc`` and ``/dev``, a read-only root, no capabilities, and
``--die-with-parent`` so that nothing outlives the hub.

Limits: memory (address space), CPU seconds and file size are rlimits set
before ``exec`` (inherited by everything in the sandbox); the number of
processes is a pids cgroup (:mod:`roomhub.runtimes.cgroups`) when one is
usable, otherwise it is not enforced and the start-up log says so.

The handle is the ``process`` runtime's (:func:`roomhub.runtimes.process.spawn`):
pseudo-terminal or pipes, process group, kill with a grace period.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import PurePosixPath

from ..config import BubblewrapConfig
from .base import ProgramHandle, ProgramSpec, Runtime, RuntimeUnavailable
from .cgroups import PidsCgroups
from .process import spawn

log = logging.getLogger("roomhub.runtimes.bubblewrap")

INSTALL_HINT = "install it with `apt-get install bubblewrap` (Debian/Ubuntu) or `dnf install bubblewrap`"


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
    ) -> list[str]:
        """The ``bwrap`` command line up to (not including) the program's argv."""
        c = self.config
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
        if not (c.network or network):
            args.append("--unshare-net")
        if not tty:
            args.append("--new-session")  # no controlling terminal to push input into (TIOCSTI)
        for path in c.ro_binds:
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.exists(path):
                args += ["--ro-bind", path, path]
        for path in c.masked:
            if os.path.isdir(path) and not os.path.islink(path):
                args += ["--tmpfs", path]
            elif os.path.exists(path):
                args += ["--ro-bind", "/dev/null", path]
        args += [
            "--proc",
            "/proc",
            "--dev",
            "/dev",
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

    # -- programs ---------------------------------------------------------------------------

    async def start(self, spec: ProgramSpec) -> ProgramHandle:
        """Start ``spec.argv`` in a fresh sandbox.

        Raises :class:`RuntimeUnavailable` when ``bwrap`` is missing or the
        user is not numeric; ``OSError`` when the program cannot start.
        """
        bwrap = self.executable()
        uid, gid = parse_user(spec.container.user, self.config.uid, self.config.gid)
        relative = spec.make_working_directory().relative_to(spec.room_dir)
        inside = str(PurePosixPath(self.config.room_mount) / relative)
        argv = [
            *self.sandbox_args(
                bwrap,
                str(spec.room_dir.resolve()),
                inside,
                tty=spec.tty,
                uid=uid,
                gid=gid,
                network=spec.container.network == "host",
            ),
            "--",
            *spec.argv,
        ]
        env = spec.base_env(self.config.room_mount)
        cgroups = self.cgroups() if spec.limits.pids else None
        if cgroups is None:
            return await spawn(argv, spec, env, spec.room_dir)
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
