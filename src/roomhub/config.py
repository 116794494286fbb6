"""The configuration file's model: one TOML file validated by pydantic.

Unknown keys are refused, relative paths are resolved against the file's
folder, and every error names the file, the key path and what was expected
(:class:`ConfigError`).

The sections every face shares (server, limits, runtime) are in
:mod:`roomhub.core.config`, each face's own section in its package
(``pages/config.py``, ``documents/config.py``, ``actions/config.py``,
``widgets/config.py``, ``backends/config.py``); this module composes them and
re-exports every section's model under its usual name.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator

from .actions.config import ActionsConfig, ActionsFilesConfig
from .backends.config import BackendsConfig
from .cluster.config import ClusterConfig
from .core.config import (
    AuthConfig,
    BubblewrapConfig,
    ContainerOptions,
    DockerConfig,
    KiB,
    LimitsConfig,
    MiB,
    Model,
    ResourceLimits,
    RuntimeConfig,
    RuntimeName,
    ServerConfig,
)
from .documents.config import POSTGRES_DSN_ENV, DocumentsConfig, PostgresStoreConfig, SQLiteStoreConfig
from .pages.config import (
    AlwaysExecutor,
    EpilogueExecutor,
    Executor,
    ExecutorBase,
    FileExecutor,
    OnceExecutor,
    PageConfig,
    PrologueExecutor,
)
from .widgets.config import WidgetsConfig

__all__ = [
    "POSTGRES_DSN_ENV",
    "ActionsConfig",
    "ActionsFilesConfig",
    "AlwaysExecutor",
    "AuthConfig",
    "BackendsConfig",
    "BubblewrapConfig",
    "ClusterConfig",
    "ConfigError",
    "ContainerOptions",
    "DockerConfig",
    "DocumentsConfig",
    "EpilogueExecutor",
    "Executor",
    "ExecutorBase",
    "FileExecutor",
    "HubConfig",
    "KiB",
    "LimitsConfig",
    "MiB",
    "Model",
    "OnceExecutor",
    "PageConfig",
    "PostgresStoreConfig",
    "PrologueExecutor",
    "ResourceLimits",
    "RuntimeConfig",
    "RuntimeName",
    "SQLiteStoreConfig",
    "ServerConfig",
    "WidgetsConfig",
    "demo_config_path",
    "load_config",
    "parse_config",
]


class HubConfig(Model):
    """The whole file. ``pages`` is keyed by URL path (``"/tutorial"``)."""

    server: ServerConfig = Field(default_factory=ServerConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    pages: dict[str, PageConfig] = Field(default_factory=dict)
    assets: dict[str, Path] = Field(
        default_factory=dict,
        description="Directories (relative to the configuration file) served as static files under "
        "URL prefixes, e.g. the scripts, styles and pages of a generated site whose pages are also "
        "configured under [pages] ('/docs' = 'site/static'); an index.html answers for its folder. "
        "Configured pages and their sockets come first.",
    )
    widgets: WidgetsConfig | None = Field(default=None, description="The widgets face (off if absent).")
    backends: BackendsConfig | None = Field(default=None, description="Present: the backends face is on.")
    actions: ActionsConfig | None = Field(default=None, description="The actions face (off if absent).")
    documents: DocumentsConfig | None = Field(
        default=None, description="Shared documents; the face is on when this section is present."
    )
    cluster: ClusterConfig | None = Field(
        default=None, description="Several hubs sharing rooms through Redis (absent: this hub alone)."
    )
    source: Path | None = Field(default=None, exclude=True, description="The file read.")

    @field_validator("pages", "assets")
    @classmethod
    def _page_paths(cls, value: dict[str, Any]) -> dict[str, Any]:
        reserved = ("/api", "/static", "/yjs", "/actions", "/widgets", "/backends")
        for path in value:
            if not path.startswith("/") or path.endswith("/") or "//" in path or "?" in path:
                raise ValueError(f"path {path!r} must start with '/' and not end with '/'")
            if any(path == r or path.startswith(r + "/") for r in reserved):
                raise ValueError(f"path {path!r} collides with a reserved prefix")
        return value


class ConfigError(Exception):
    """A configuration that cannot be used; ``errors`` lists ``(key path, message)``."""

    def __init__(self, source: str, errors: list[tuple[str, str]]):
        self.source = source
        self.errors = errors
        lines = [f"{source}: {key}: {msg}" if key else f"{source}: {msg}" for key, msg in errors]
        super().__init__("\n".join(lines))


def _key_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in ("always", "once", "prologue", "epilogue", "file") and parts:
            continue  # the discriminated union's tag adds no information to the path
        else:
            text = str(item)
            parts.append(("." if parts else "") + (f'"{text}"' if "/" in text or "." in text else text))
    return "".join(parts)


def _resolve_paths(config: HubConfig, base: Path) -> HubConfig:
    data_dir = config.server.data_dir
    if data_dir is None:
        xdg = os.environ.get("XDG_DATA_HOME")
        data_dir = (Path(xdg) if xdg else Path.home() / ".local" / "share") / "roomhub"
    config.server.data_dir = (base / data_dir).resolve()
    if config.widgets is not None and config.widgets.app and ".py:" in config.widgets.app:
        file, _, attr = config.widgets.app.rpartition(":")
        if not Path(file).is_absolute():
            config.widgets.app = f"{(base / file).resolve()}:{attr}"
    if config.backends is not None:
        config.backends.catalogs = [(base / c).resolve() for c in config.backends.catalogs]
    if config.actions is not None:
        actions = config.actions
        actions.pythonpath = [(base / p).resolve() for p in actions.pythonpath]
        if actions.files.root is not None:
            actions.files.root = (base / actions.files.root).resolve()
    for page in config.pages.values():
        if not page.html.is_absolute():
            page.html = (base / page.html).resolve()
    config.assets = {prefix: (base / directory).resolve() for prefix, directory in config.assets.items()}
    return config


def parse_config(data: dict[str, Any], source: str = "<config>", base: Path | None = None) -> HubConfig:
    """Validate a configuration mapping.

    Returns a :class:`HubConfig` whose relative paths are resolved against
    ``base`` (default: the working directory). Raises :class:`ConfigError`
    listing every problem with its key path.
    """
    try:
        config = HubConfig.model_validate(data)
    except ValidationError as exc:
        errors = [(_key_path(e["loc"]), e["msg"]) for e in exc.errors()]
        raise ConfigError(source, errors) from None
    return _resolve_paths(config, base or Path.cwd())


def load_config(path: str | Path) -> HubConfig:
    """Read and validate a TOML configuration file.

    Raises :class:`ConfigError` for a missing file, bad TOML (with its line)
    or invalid values (with their key paths); page HTML files and asset directories must
    exist.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(path), [("", "no such file")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [("", f"not valid TOML: {exc}")]) from None
    config = parse_config(data, str(path), path.resolve().parent)
    config.source = path.resolve()
    missing = [
        (f'pages."{key}".html', f"file not found: {page.html}")
        for key, page in config.pages.items()
        if not page.html.is_file()
    ] + [
        (f'assets."{prefix}"', f"not a directory: {directory}")
        for prefix, directory in config.assets.items()
        if not directory.is_dir()
    ]
    if missing:
        raise ConfigError(str(path), missing)
    return config


def demo_config_path() -> Path:
    """The embedded demo's configuration file."""
    return Path(__file__).parent / "demo" / "roomhub.toml"
