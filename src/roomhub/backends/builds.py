"""Builds of backend packages, keyed by a fingerprint of (package, version, build options, Dockerfile).

Two kinds, chosen by the manifest's ``build.kind``:

- **venv**: ``python -m venv --without-pip`` with the interpreter named by
  the build option ``python`` (``""``: the hub's own; ``"3.12"``: ``python3.12``
  on ``PATH``), then the hub's pip (``pip --python <venv>``) installs
  ``build.requirements`` and the ``modules`` option from the package index.
  With ``build.hub_packages`` and the same ``major.minor`` as the hub, a
  ``.pth`` file lets the venv see the hub's own site-packages, so what the
  hub already has (FastAPI, uvicorn) is not downloaded again.
- **docker**: an image ``roomhub-backend/<name>:<version>-<hash>`` built by
  :class:`~roomhub.backends.containers.DockerEngine` with the build options
  as build args (or the client's Dockerfile).

A finished build is recorded (``build.json`` in the venv, the tag on the
engine) and reused; concurrent installs of one fingerprint build once.
Every output line goes to the caller (``on_line``) and to the build log
``<builds>/<fingerprint>.log``, which :meth:`Builder.log_of` reads back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shlex
import shutil
import sys
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..runtimes.docker import image_exists
from . import protocol as p
from .containers import DockerEngine
from .packages import Package

if TYPE_CHECKING:
    from ..core.metrics import HubMetrics

log = logging.getLogger("roomhub.backends.builds")

LineSink = Callable[[str], None]


class BuildFailed(p.BadRequest):
    """A build that did not complete; ``extra`` has the tail of its log (HTTP 500)."""

    status = 500


@dataclass(frozen=True)
class Build:
    """A finished build: ``python`` (venv) or ``image`` (docker), and its options."""

    fingerprint: str
    kind: str
    options: dict[str, str]
    dockerfile: str | None = None
    python: Path | None = None
    image: str | None = None


def available_pythons() -> dict[str, str]:
    """``{"3.12": path, ...}`` for the ``python3.N`` interpreters on ``PATH``."""
    found: dict[str, str] = {}
    for minor in range(8, 20):
        path = shutil.which(f"python3.{minor}")
        if path:
            found[f"3.{minor}"] = path
    return found


def hub_python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def find_python(wanted: str) -> tuple[str, str]:
    """``(path, "3.N")`` of the interpreter for build option ``python``; raises :class:`BuildFailed`."""
    wanted = wanted.strip()
    if wanted in ("", "hub", hub_python_version()):
        return sys.executable, hub_python_version()
    if not re.fullmatch(r"3\.\d{1,2}", wanted):
        raise BuildFailed("bad-build-option", f"build option python={wanted!r}: expected '' or '3.N'",
                          status=422)
    pythons = available_pythons()
    if wanted not in pythons:
        have = ", ".join(sorted({hub_python_version(), *pythons}, key=lambda v: int(v.split(".")[1])))
        raise BuildFailed("python-unavailable", f"no Python {wanted} on this machine (it has: {have})",
                          status=422)
    return pythons[wanted], wanted


def split_modules(text: str) -> list[str]:
    """The ``modules`` option: requirements separated by spaces or commas (shell quoting allowed)."""
    return [m for part in shlex.split(text.replace(",", " ")) if (m := part.strip())]


class Builder:
    """Builds and caches builds under ``builds_dir``; ``engine`` serves the docker kind."""

    def __init__(self, builds_dir: Path, engine: DockerEngine, timeout: float = 900.0) -> None:
        self.dir = builds_dir
        self.engine = engine
        self.timeout = timeout
        self._locks: dict[str, asyncio.Lock] = {}
        self.metrics: HubMetrics | None = None  # the hub's: build durations by outcome

    def log_path(self, fp: str) -> Path:
        return self.dir / f"{fp}.log"

    def log_of(self, fp: str, limit: int = 2000) -> list[str]:
        """The last ``limit`` lines of the build log of ``fp`` (empty if none)."""
        try:
            return self.log_path(fp).read_text(errors="replace").splitlines()[-limit:]
        except FileNotFoundError:
            return []

    async def build(self, package: Package, options: dict[str, str], dockerfile: str | None,
                    on_line: LineSink) -> tuple[Build, bool]:
        """Build (or reuse) ``package`` with ``options``; returns ``(build, reused)``.

        Raises :class:`BuildFailed` (``build-failed``, 500) with the log's tail,
        or (422) for an unusable option.
        """
        kind = package.manifest.build.kind
        if dockerfile is not None and kind != "docker":
            raise BuildFailed("bad-build-option", f"{package.name} is a {kind} backend: no dockerfile option",
                              status=422)
        fp = p.fingerprint(package.name, package.version, options, dockerfile)
        lock = self._locks.setdefault(fp, asyncio.Lock())
        async with lock:
            self.dir.mkdir(parents=True, exist_ok=True)
            build = await self._cached(package, fp, options, dockerfile)
            if build is not None:
                on_line(f"using the cached build {fp}")
                return build, True
            with open(self.log_path(fp), "w", encoding="utf-8") as logfile:  # noqa: ASYNC230 (small lines)

                def sink(line: str) -> None:
                    logfile.write(line + "\n")
                    logfile.flush()
                    on_line(line)

                started = time.monotonic()
                sink(f"building {package.name} {package.version} ({kind}) as {fp}")
                outcome = "failed"
                try:
                    coro = (self._venv(package, fp, options, sink) if kind == "venv"
                            else self._image(package, fp, options, dockerfile, sink))
                    build = await asyncio.wait_for(coro, self.timeout)
                    outcome = "ok"
                except BuildFailed as exc:
                    sink(f"build failed: {exc.detail}")
                    raise
                except TimeoutError:
                    sink(f"build timed out after {self.timeout:.0f} s")
                    why = f"the build took longer than {self.timeout:.0f} s"
                    raise self._failed(package, fp, why) from None
                except (RuntimeError, OSError) as exc:
                    sink(f"build failed: {exc}")
                    raise self._failed(package, fp, str(exc)) from None
                finally:
                    if self.metrics is not None:
                        self.metrics.backend_builds.labels(outcome).observe(time.monotonic() - started)
                sink(f"built in {time.monotonic() - started:.1f} s")
                return build, False

    def _failed(self, package: Package, fp: str, why: str) -> BuildFailed:
        return BuildFailed("build-failed", f"building {package.name} {package.version} failed: {why}",
                           name=package.name, version=package.version, fingerprint=fp,
                           log=self.log_of(fp, 40))

    async def _cached(self, package: Package, fp: str, options: dict[str, str],
                      dockerfile: str | None) -> Build | None:
        if package.manifest.build.kind == "venv":
            record = self.dir / fp / "build.json"
            if record.is_file():
                data = json.loads(record.read_text())
                return Build(fp, "venv", options, python=Path(data["python"]))
            return None
        tag = self.image_tag(package, fp)
        try:
            exists = await image_exists(self.engine.docker, tag)
        except Exception:
            return None
        return Build(fp, "docker", options, dockerfile, image=tag) if exists else None

    @staticmethod
    def image_tag(package: Package, fp: str) -> str:
        return f"roomhub-backend/{package.name.lower()}:{package.version}-{fp.rsplit('_', 1)[1]}"

    async def _run(self, argv: list[str], sink: LineSink, env: dict[str, str] | None = None) -> None:
        sink("$ " + shlex.join(argv))
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL, env={**os.environ, **(env or {})},
        )
        assert proc.stdout is not None
        try:
            async for raw in proc.stdout:
                sink(raw.decode(errors="replace").rstrip())
            code = await proc.wait()
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        if code != 0:
            raise RuntimeError(f"{Path(argv[0]).name} {argv[1] if len(argv) > 1 else ''} exited with {code}")

    async def _venv(self, package: Package, fp: str, options: dict[str, str], sink: LineSink) -> Build:
        interpreter, version = find_python(options.get("python", ""))
        target = self.dir / fp
        shutil.rmtree(target, ignore_errors=True)
        base = interpreter
        if interpreter == sys.executable:  # the hub may run in a venv: start from its base interpreter
            base = getattr(sys, "_base_executable", sys.executable)
        await self._run([base, "-m", "venv", "--without-pip", str(target)], sink)
        python = target / "bin" / "python"
        manifest = package.manifest.build
        if manifest.hub_packages and version == hub_python_version():
            site = target / "lib" / f"python{version}" / "site-packages"
            paths = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
            (site / "_roomhub_hub_packages.pth").write_text("\n".join(paths) + "\n")
            sink(f"the venv sees the hub's packages ({', '.join(paths)})")
        requirements = [*manifest.requirements, *split_modules(options.get("modules", ""))]
        if requirements:
            await self._run([sys.executable, "-m", "pip", "--python", str(python), "install",
                             "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
                             *requirements], sink, env={"PIP_NO_WARN_SCRIPT_LOCATION": "1"})
        record = {"python": str(python), "options": options, "package": package.name,
                  "version": package.version}
        (target / "build.json").write_text(json.dumps(record))
        return Build(fp, "venv", options, python=python)

    async def _image(self, package: Package, fp: str, options: dict[str, str], dockerfile: str | None,
                     sink: LineSink) -> Build:
        tag = self.image_tag(package, fp)
        labels = {"roomhub.backend": package.name, "roomhub.fingerprint": fp}
        await self.engine.build_image(package.directory, tag, package.manifest.build.dockerfile, dockerfile,
                                      options, labels, sink)
        return Build(fp, "docker", options, dockerfile, image=tag)

    def describe(self) -> list[dict[str, Any]]:
        """The venv builds on disk (fingerprints and their options)."""
        found = []
        for record in sorted(self.dir.glob("*/build.json")):
            try:
                data = json.loads(record.read_text())
            except (OSError, ValueError):
                continue
            found.append({"fingerprint": record.parent.name, "kind": "venv", **data})
        return found
