"""Backend packages: the ``roomhub-backend.toml`` manifest and the catalogs that hold packages.

A package is a directory (or a ``.tar.gz``/``.tgz``/``.zip`` archive of one)
whose top holds ``roomhub-backend.toml``::

    name = "roomhub_demo_backend"          # letters, digits, _ . -
    version = "0.1.0"                      # semver
    description = "..."
    [dependencies]                         # other backends, started first in the same partition
    pyrun_backend = "^0.2.0"
    [build]
    kind = "venv"                          # "venv" or "docker"
    requirements = ["fastapi>=0.110"]      # venv: always pip-installed
    hub_packages = true                    # venv: see the hub's packages when the Python versions match
    dockerfile = "Dockerfile"              # docker: relative to the package
    [build.options]                        # build options and their defaults (strings)
    python = ""                            # venv: "" is the hub's interpreter, else "3.12", ...
    modules = ""                           # venv: more pip requirements, space or comma separated
    [start]
    command = ["{python}", "-m", "uvicorn", "app:app", "--uds", "{socket}", "--root-path", "{base_path}"]
    listen = "unix"                        # "unix" (a socket file) or "port" (127.0.0.1 only)
    ready_timeout = 60.0                   # seconds for GET / to answer 200
    env = {}

Placeholders in ``start.command`` and ``start.env``: ``{python}``,
``{socket}``, ``{port}``, ``{host}``, ``{base_path}``, ``{partition}``,
``{package_dir}`` and ``{options[NAME]}`` (a build option's value). A
catalog is a directory whose sub-directories and archives are packages;
:class:`Catalog` reads several.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import protocol as p

log = logging.getLogger("roomhub.backends.packages")

MANIFEST = "roomhub-backend.toml"
ARCHIVES = (".tar.gz", ".tgz", ".zip")
SHIPPED_CATALOG = Path(__file__).parent / "catalog"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BuildSection(_Model):
    kind: Literal["venv", "docker"] = "venv"
    requirements: list[str] = Field(default_factory=list)
    hub_packages: bool = False
    dockerfile: str = "Dockerfile"
    options: dict[str, str] = Field(default_factory=dict)


class StartSection(_Model):
    command: list[str] = Field(min_length=1)
    listen: Literal["unix", "port"] = "unix"
    ready_timeout: float | None = Field(default=None, gt=0, le=3600)
    env: dict[str, str] = Field(default_factory=dict)


class Manifest(_Model):
    name: str
    version: str
    description: str = ""
    dependencies: dict[str, str] = Field(default_factory=dict)
    build: BuildSection = Field(default_factory=BuildSection)
    start: StartSection

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not p.NAME_RE.match(value):
            raise ValueError("letters, digits, '_', '.', '-' (at most 64)")
        return value

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        p.parse_version(value)
        return value

    @field_validator("dependencies")
    @classmethod
    def _ranges(cls, value: dict[str, str]) -> dict[str, str]:
        for name, rng in value.items():
            if not p.NAME_RE.match(name):
                raise ValueError(f"invalid backend name {name!r}")
            p.npm_spec(rng)
        return value


class PackageError(Exception):
    """A package directory or archive that cannot be read; the message names the file and key."""


@dataclass(frozen=True)
class Package:
    """A readable package: its ``manifest`` and its ``directory``."""

    manifest: Manifest
    directory: Path

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    def options(self, given: dict[str, str]) -> dict[str, str]:
        """Build options: the manifest's defaults overridden by ``given``.

        Raises :class:`~roomhub.backends.protocol.BadRequest` (``unknown-build-option``)
        for an option the package does not declare.
        """
        unknown = sorted(set(given) - set(self.manifest.build.options))
        if unknown:
            raise p.BadRequest(
                "unknown-build-option",
                f"{self.name} {self.version} has no build option {', '.join(map(repr, unknown))}; "
                f"it has: {', '.join(sorted(self.manifest.build.options)) or 'none'}",
                status=422, name=self.name,
            )
        return {**self.manifest.build.options, **given}

    def describe(self) -> dict[str, object]:
        m = self.manifest
        return {"name": m.name, "version": m.version, "description": m.description, "kind": m.build.kind,
                "options": m.build.options, "dependencies": m.dependencies}


def read_package(directory: Path) -> Package:
    """Read ``directory/roomhub-backend.toml``; raises :class:`PackageError` naming the problem."""
    path = directory / MANIFEST
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PackageError(f"{path}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PackageError(f"{path}: not valid TOML: {exc}") from None
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise PackageError(f"{path}: {problems}") from None
    except p.BadRequest as exc:
        raise PackageError(f"{path}: {exc.detail}") from None
    if manifest.build.kind == "docker" and not (directory / manifest.build.dockerfile).is_file():
        raise PackageError(f"{path}: build.dockerfile {manifest.build.dockerfile!r} not found")
    return Package(manifest, directory.resolve())


def unpack(archive: Path, cache: Path) -> Path:
    """Unpack ``archive`` once into ``cache/<sha256 prefix>`` and return the package directory."""
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()[:20]
    target = cache / digest
    if not target.is_dir():
        tmp = cache / f".{digest}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        shutil.unpack_archive(str(archive), str(tmp), filter="data")
        tmp.rename(target)
    if (target / MANIFEST).is_file():
        return target
    subdirs = [d for d in target.iterdir() if (d / MANIFEST).is_file()]
    if len(subdirs) != 1:
        raise PackageError(f"{archive}: no {MANIFEST} at its top or in its single top directory")
    return subdirs[0]


class Catalog:
    """The packages of several catalog directories, read afresh on each :meth:`scan`.

    Unreadable packages are logged (once per problem) and skipped, so one bad
    package never hides the others.
    """

    def __init__(self, directories: list[Path], unpack_dir: Path) -> None:
        self.directories = directories
        self.unpack_dir = unpack_dir
        self._reported: set[str] = set()

    def _candidates(self) -> list[Path]:
        found: list[Path] = []
        for root in self.directories:
            if (root / MANIFEST).is_file():
                found.append(root)
                continue
            if not root.is_dir():
                self._report(f"catalog directory {root} does not exist")
                continue
            for entry in sorted(root.iterdir()):
                if entry.is_dir() and (entry / MANIFEST).is_file():
                    found.append(entry)
                elif entry.is_file() and entry.name.endswith(ARCHIVES):
                    try:
                        found.append(unpack(entry, self.unpack_dir))
                    except (PackageError, OSError, ValueError, shutil.ReadError) as exc:
                        self._report(f"{entry}: cannot unpack: {exc}")
        return found

    def _report(self, message: str) -> None:
        if message not in self._reported:
            self._reported.add(message)
            log.warning("%s", message)

    def scan(self) -> dict[str, dict[str, Package]]:
        """Every readable package: ``{name: {version: Package}}`` (the first catalog wins a tie)."""
        packages: dict[str, dict[str, Package]] = {}
        for directory in self._candidates():
            try:
                package = read_package(directory)
            except PackageError as exc:
                self._report(str(exc))
                continue
            packages.setdefault(package.name, {}).setdefault(package.version, package)
        return packages

    def resolve(self, name: str, rng: str) -> Package:
        """The newest package ``name`` matching npm range ``rng``.

        Raises :class:`~roomhub.backends.protocol.BadRequest`: ``unknown-backend``
        (404) or ``no-matching-version`` (404, with the versions available).
        """
        versions = self.scan().get(name)
        if not versions:
            raise p.BadRequest("unknown-backend", f"no backend named {name!r} in the catalogs",
                               status=404, name=name)
        chosen = p.select_version(list(versions), rng)
        if chosen is None:
            raise p.BadRequest(
                "no-matching-version",
                f"no version of {name!r} satisfies {rng!r} (available: {', '.join(sorted(versions))})",
                status=404, name=name, range=rng, available=sorted(versions),
            )
        return versions[chosen]
