"""The configuration file's model: one TOML file validated by pydantic.

Unknown keys are refused, relative paths are resolved against the file's
folder, and every error names the file, the key path and what was expected
(:class:`ConfigError`).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

KiB = 1024
MiB = 1024 * KiB

RuntimeName = Literal["process", "bubblewrap", "docker"]


class Model(BaseModel):
    """Base of every configuration section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class AuthConfig(Model):
    """Optional token auth on every HTTP and WebSocket endpoint.

    Auth is on when ``tokens`` is not empty or ``secret_key`` is set. A client
    presents its token as ``Authorization: Bearer <token>``, a
    ``roomhub_token`` cookie or a ``token`` query parameter.
    """

    tokens: list[str] = Field(default_factory=list, description="Accepted static tokens.")
    secret_key: str | None = Field(
        default=None,
        min_length=16,
        description="Key for signed tokens made by `roomhub token` (itsdangerous).",
    )
    token_max_age: float = Field(default=86400.0, gt=0, description="Signed token life, seconds.")

    @property
    def enabled(self) -> bool:
        return bool(self.tokens) or self.secret_key is not None


class LimitsConfig(Model):
    """Limits that protect the hub from its clients."""

    max_frame_bytes: int = Field(default=1 * MiB, ge=1 * KiB, description="Largest WebSocket frame.")
    max_rooms_per_namespace: int = Field(default=1000, ge=1)
    max_clients_per_room: int = Field(default=200, ge=1)
    max_connections: int = Field(default=10000, ge=1)
    send_queue_frames: int = Field(
        default=1024, ge=1, description="Frames queued for one client before it is closed."
    )
    room_name_max_length: int = Field(default=128, ge=1, le=1024)


class ServerConfig(Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed to open WebSockets besides the hub's own (e.g. https://example.org).",
    )
    allow_non_loopback: bool = Field(
        default=False,
        description="Allow a non-loopback bind while the process runtime is in use.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shutdown_timeout: float = Field(default=10.0, gt=0, description="Seconds to stop everything.")
    data_dir: Path | None = Field(
        default=None,
        description="Room directories and stores; default: $XDG_DATA_HOME/roomhub or ~/.local/share/roomhub.",
    )
    auth: AuthConfig = Field(default_factory=AuthConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)


class ResourceLimits(Model):
    """Resource limits of one program. Units: bytes, seconds, count."""

    memory_bytes: int | None = Field(default=256 * MiB, ge=1 * MiB)
    cpu_seconds: int | None = Field(default=600, ge=1)
    pids: int | None = Field(default=128, ge=1)
    file_size_bytes: int | None = Field(default=64 * MiB, ge=1)


class BubblewrapConfig(Model):
    executable: str = "bwrap"
    network: bool = Field(default=False, description="Share the host network (off: own namespace).")
    ro_binds: list[str] = Field(
        default_factory=lambda: ["/usr", "/etc", "/bin", "/lib", "/lib64", "/sbin"],
        description="Host paths mounted read-only inside the sandbox (missing ones are skipped).",
    )


class DockerConfig(Model):
    url: str | None = Field(default=None, description="Engine URL; default: DOCKER_HOST or the local socket.")
    pull: bool = Field(default=False, description="Pull a missing image instead of failing.")


class RuntimeConfig(Model):
    default: RuntimeName = "process"
    bubblewrap: BubblewrapConfig = Field(default_factory=BubblewrapConfig)
    docker: DockerConfig = Field(default_factory=DockerConfig)


class ExecutorBase(Model):
    runtime: RuntimeName | None = Field(default=None, description="Default: runtime.default.")
    command: list[str] | str = Field(description="argv list, or a string split shell-style.")
    working_directory: str = Field(default=".", description="Relative to the room directory.")
    env: dict[str, str] = Field(default_factory=dict)
    tty: bool = False
    limits: ResourceLimits = Field(default_factory=ResourceLimits)
    image: str | None = Field(default=None, description="Container image (docker runtime).")

    @field_validator("command")
    @classmethod
    def _command_not_empty(cls, value: list[str] | str) -> list[str] | str:
        if not value or (isinstance(value, list) and not value[0]):
            raise ValueError("the command must not be empty")
        return value


class AlwaysExecutor(ExecutorBase):
    type: Literal["always"]
    scrollback_bytes: int = Field(default=64 * KiB, ge=0, description="Output kept for late joiners.")
    restart_delay: float = Field(default=0.5, ge=0, description="First restart delay, seconds.")
    restart_delay_max: float = Field(default=30.0, ge=0, description="Backoff cap, seconds.")
    stable_after: float = Field(
        default=10.0, ge=0, description="Run time after which the backoff resets, seconds."
    )


class OnceExecutor(ExecutorBase):
    type: Literal["once"]
    timeout: float = Field(default=60.0, gt=0, description="Seconds before a run is killed.")
    scrollback_bytes: int = Field(default=64 * KiB, ge=0)


class PrologueExecutor(ExecutorBase):
    type: Literal["prologue"]
    timeout: float = Field(default=30.0, gt=0)


class EpilogueExecutor(ExecutorBase):
    type: Literal["epilogue"]
    timeout: float = Field(default=30.0, gt=0)


class FileExecutor(Model):
    """A file of the room directory shown to viewers and written by editors.

    It speaks the interactive-widgets monitor's JSON lines, but the hub
    watches the file itself (watchfiles) instead of running a monitor.
    """

    type: Literal["file"]
    path: str = Field(description="Relative to the room directory.")
    initial: str | None = Field(default=None, description="Contents written when the room is created.")
    max_bytes: int = Field(default=1 * MiB, ge=1)
    debounce: float = Field(default=0.05, ge=0, description="Seconds to wait for a burst of writes.")

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        p = Path(value)
        if p.is_absolute() or ".." in p.parts or not value:
            raise ValueError("must be a relative path inside the room directory")
        return value


Executor = Annotated[
    AlwaysExecutor | OnceExecutor | PrologueExecutor | EpilogueExecutor | FileExecutor,
    Field(discriminator="type"),
]


class PageConfig(Model):
    title: str = ""
    html: Path = Field(description="The page's HTML file (relative to the configuration file).")
    grace_period: float = Field(default=0.0, ge=0, description="Seconds an empty room is kept.")
    executors: dict[str, Executor] = Field(default_factory=dict)

    @field_validator("executors")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not name or len(name) > 128:
                raise ValueError(f"executor name {name!r} must have 1 to 128 characters")
        return value


class SQLiteStoreConfig(Model):
    """The SQLite document store (one file, WAL, group commit)."""

    path: Path = Field(
        default=Path("documents.sqlite3"), description="Database file; relative to server.data_dir."
    )
    commit_window: float = Field(
        default=0.05, gt=0, le=5,
        description="Group commit window, seconds: the most a crash loses.",
    )
    synchronous: Literal["normal", "full"] = Field(
        default="full", description="SQLite's synchronous pragma: full fsyncs every commit."
    )


class DocumentsConfig(Model):
    """Shared Yjs documents at ``/yjs/<room>`` (y-websocket protocol)."""

    store: Literal["sqlite", "memory"] = "sqlite"
    sqlite: SQLiteStoreConfig = Field(default_factory=SQLiteStoreConfig)
    grace_period: float = Field(
        default=30.0, ge=0, description="Seconds an empty document room stays in memory."
    )
    compact_after: int = Field(
        default=500, ge=2, description="Stored updates of one document that trigger compaction."
    )
    access: str | None = Field(
        default=None,
        description="'module:function' deciding 'allow', 'read-only' or 'deny' per connection "
        "and room.",
    )
    keepalive_interval: float = Field(
        default=15.0, ge=0,
        description="Seconds between keepalive messages to every client (0: off).",
    )
    max_awareness_clients: int = Field(
        default=16, ge=1, description="Awareness client ids one connection may announce."
    )

    @field_validator("access")
    @classmethod
    def _hook_path(cls, value: str | None) -> str | None:
        if value is not None and (value.count(":") != 1 or not all(value.split(":"))):
            raise ValueError("must be 'module:function', e.g. 'myapp.auth:document_access'")
        return value


class HubConfig(Model):
    """The whole file. ``pages`` is keyed by URL path (``"/tutorial"``)."""

    server: ServerConfig = Field(default_factory=ServerConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    pages: dict[str, PageConfig] = Field(default_factory=dict)
    documents: DocumentsConfig | None = Field(
        default=None, description="Shared documents; the face is on when this section is present."
    )
    source: Path | None = Field(default=None, exclude=True, description="The file read.")

    @field_validator("pages")
    @classmethod
    def _page_paths(cls, value: dict[str, PageConfig]) -> dict[str, PageConfig]:
        reserved = ("/api", "/static", "/yjs", "/actions", "/widgets", "/backends")
        for path in value:
            if not path.startswith("/") or path.endswith("/") or "//" in path or "?" in path:
                raise ValueError(f"page path {path!r} must start with '/' and not end with '/'")
            if any(path == r or path.startswith(r + "/") for r in reserved):
                raise ValueError(f"page path {path!r} collides with a reserved prefix")
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
    for page in config.pages.values():
        if not page.html.is_absolute():
            page.html = (base / page.html).resolve()
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
    or invalid values (with their key paths); page HTML files must exist.
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
    ]
    if missing:
        raise ConfigError(str(path), missing)
    return config


def demo_config_path() -> Path:
    """The embedded demo's configuration file."""
    return Path(__file__).parent / "demo" / "roomhub.toml"
