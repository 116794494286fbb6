"""The configuration file's model: one TOML file validated by pydantic.

Unknown keys are refused, relative paths are resolved against the file's
folder, and every error names the file, the key path and what was expected
(:class:`ConfigError`).
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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
    send_buffer_bytes: int = Field(
        default=16 * MiB, ge=64 * KiB,
        description="Unsent bytes held for one client of a callback WebSocket endpoint (/yjs) "
        "before it is closed as a slow consumer (4008).",
    )
    room_name_max_length: int = Field(default=128, ge=1, le=1024)
    max_json_depth: int = Field(
        default=64, ge=2, le=200,
        description="Deepest nesting of arrays and objects (levels) in a client's JSON message or "
        "request body; deeper input is refused as not JSON.",
    )
    header_timeout: float = Field(
        default=10.0, gt=0,
        description="Seconds a connection has to send a complete request head (WebSocket upgrades "
        "too), from its opening or, kept alive, from the next request's first byte; then HTTP 408 "
        "and closed (closed if it sent nothing). Idle kept-alive connections are closed after "
        "uvicorn's keep-alive timeout (5 s).",
    )
    max_pending_connections: int = Field(
        default=1000, ge=1,
        description="Connections waiting for their request head at once; a new one closes the oldest.",
    )
    receive_rate: float = Field(
        default=1000.0, ge=0,
        description="Messages per second one client may send on a WebSocket of the hub's faces "
        "(pages, documents, actions, widgets; not the backends proxy), on average (a token bucket "
        "refilled at this rate); a client over it is read no faster (the hub stops reading it: TCP "
        "flow control slows it down). 0: no limit.",
    )
    receive_burst: int = Field(
        default=2000, ge=1,
        description="Messages one client may send at once beyond receive_rate (the bucket's size).",
    )
    receive_throttled_close: float = Field(
        default=30.0, ge=0,
        description="Seconds a client may stay held back by receive_rate without a break (until "
        "its bucket is half full again) before it is closed with 4029. 0: never closed.",
    )
    room_receive_rate: float = Field(
        default=2000.0, ge=0,
        description="Messages per second the clients of one room (a page room, a document, a "
        "widgets session, an actions session) may send together, on average (one token bucket per "
        "room, which each member's message draws from besides its own receive_rate); past it the "
        "room's senders are read no faster, and closed with 4029 when the room stays held back "
        "for receive_throttled_close seconds. 0: no limit.",
    )
    room_receive_burst: int = Field(
        default=4000, ge=1,
        description="Messages the clients of one room may send at once beyond room_receive_rate "
        "(the room bucket's size).",
    )


class ServerConfig(Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins (scheme://host[:port]) besides the hub's own whose pages may open "
        "WebSockets and send POST, PUT, PATCH and DELETE requests (e.g. https://example.org).",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names (without port) the hub answers to besides localhost, loopback "
        "addresses, server.host and the address a request arrived on, e.g. the public name of a "
        "hub behind a reverse proxy; other Host headers get HTTP 421 (DNS rebinding). "
        '"*": any host.',
    )
    allow_non_loopback: bool = Field(
        default=False,
        description="Allow a non-loopback bind while code runs unsandboxed as the hub's user (the "
        "process runtime, backends built as virtual environments).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = Field(
        default="text",
        description='"text": one human line per record; "json": one JSON object per line (time, '
        "level, logger, message, and face, room and connection where they apply).",
    )
    metrics_public: bool = Field(
        default=False,
        description="Serve /metrics without a token when server.auth is on (for a Prometheus "
        "scraper that sends none); off: /metrics needs a token like every other endpoint.",
    )

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, value: list[str]) -> list[str]:
        for name in value:
            ipv6 = name.startswith("[") and name.endswith("]")  # an IPv6 address, as in a URL
            bare = name[1:-1] if ipv6 else name
            if name != "*" and (not bare or any(c in bare for c in "/@?# ") or (":" in bare) != ipv6):
                raise ValueError(f"{name!r} is not a host name without port (or \"*\")")
        return value

    shutdown_timeout: float = Field(default=10.0, gt=0, description="Seconds to stop everything.")
    ping_interval: float = Field(
        default=20.0, ge=0,
        description="Seconds between WebSocket pings to every client; a client that has not "
        "answered within as long again is closed (1011). 0: no pings.",
    )
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
    cpus: float | None = Field(
        default=None, gt=0, le=1024,
        description="CPU quota in cores (docker: NanoCpus); other runtimes use cpu_seconds.",
    )
    room_bytes: int | None = Field(
        default=256 * MiB, ge=1 * MiB,
        description="Room quota, bytes: disk space the room's directory may use while this program "
        "runs; past it the program is killed and the room's clients are told. Checked by the hub "
        "every half second or so (every runtime; docker only with bind-mounted rooms). None: no quota.",
    )


class ContainerOptions(Model):
    """How a sandboxed program runs: its user, root file system and network.

    Honoured by ``docker`` (all keys) and ``bubblewrap`` (``user`` as a
    numeric ``uid[:gid]``); the ``process`` runtime ignores them.
    """

    user: str | None = Field(
        default=None,
        description='User inside the container ("uid[:gid]" or a name); default: the image\'s.',
    )
    read_only_root: bool = Field(
        default=False, description="Mount the image's root file system read-only."
    )
    network: str | None = Field(
        default=None,
        description="Docker network to join (e.g. a user-defined network); default: none.",
    )


# What a sandboxed program may see of the host's /etc: what the C library, Python, shells,
# terminals and TLS clients read. Secrets (shadow, gshadow, sudoers, ssl/private, ssh, docker)
# are left out by not being listed; passwd, group and hosts are generated per sandbox.
ETC_ALLOWED = [
    "/etc/alternatives", "/etc/bash.bashrc", "/etc/ca-certificates.conf", "/etc/debian_version",
    "/etc/fonts", "/etc/gai.conf", "/etc/host.conf", "/etc/inputrc", "/etc/ld.so.cache",
    "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/locale.alias", "/etc/localtime", "/etc/magic",
    "/etc/magic.mime", "/etc/mime.types", "/etc/nsswitch.conf", "/etc/os-release",
    "/etc/profile", "/etc/profile.d", "/etc/protocols", "/etc/python3", "/etc/python3.*",
    "/etc/rpc", "/etc/services", "/etc/ssl/certs", "/etc/ssl/openssl.cnf", "/etc/terminfo",
    "/etc/timezone", "/etc/vim", "/etc/xdg",
]


class BubblewrapConfig(Model):
    """The ``bubblewrap`` runtime: ``bwrap`` with own user, pid, ipc, uts, network namespaces.

    The sandbox sees an allow-list of host paths (``ro_binds`` and
    ``extra_ro_binds``), nothing else of the host.
    """

    executable: str = "bwrap"
    network: bool = Field(
        default=False,
        description="Share the host network (off: own namespace); on, /etc/resolv.conf is bound too.",
    )
    ro_binds: list[str] = Field(
        default_factory=lambda: [
            "/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32", *ETC_ALLOWED,
        ],
        description="The host paths mounted read-only inside the sandbox, the only ones it sees "
        "(an allow-list; shell-style patterns allowed; missing ones are skipped). Replacing it "
        "drops the defaults; extra_ro_binds adds to them.",
    )
    extra_ro_binds: list[str] = Field(
        default_factory=list,
        description="Host paths mounted read-only besides ro_binds (e.g. /opt/tools).",
    )
    room_mount: str = Field(default="/room", description="Where the room directory appears inside.")
    uid: int = Field(default=1000, ge=0, description="User id in the sandbox (own user namespace).")
    gid: int = Field(default=1000, ge=0, description="Group id inside the sandbox.")
    hostname: str = Field(default="room", description="Host name inside (own UTS namespace).")
    pids_cgroup: bool = Field(
        default=True,
        description="Enforce limits.pids with a pids cgroup (v1, or a delegated v2 subtree); "
        "off or unavailable: not enforced (logged at start-up).",
    )
    tmpfs_bytes: int = Field(
        default=64 * MiB, ge=1 * MiB,
        description="Size of the sandbox's /tmp (a tmpfs, in memory not counted by memory_bytes), bytes.",
    )
    shm_bytes: int = Field(
        default=64 * MiB, ge=1 * MiB, description="Size of the sandbox's /dev/shm (a tmpfs), bytes."
    )


class DockerConfig(Model):
    """The ``docker`` runtime: executors as containers on a Docker engine."""

    url: str | None = Field(
        default=None,
        description="Engine URL (unix:///path, tcp://host:port); default: DOCKER_HOST or local.",
    )
    pull: bool = Field(default=False, description="Pull a missing image instead of failing.")
    image: str | None = Field(default=None, description="Image of executors that name none.")
    room_mount: str = Field(
        default="/room",
        description='Where containers see the room directory ("/data": interactive-widgets).',
    )
    room_storage: Literal["auto", "bind", "volume"] = Field(
        default="auto",
        description="bind: the hub's room directory (local engine only); volume: a labelled named "
        "volume; auto: bind when the engine is local, else volume.",
    )
    init: bool = Field(default=True, description="docker-init as PID 1 (signals reach programs).")
    tmpfs_bytes: int = Field(
        default=64 * MiB, ge=1 * MiB, description="Size of every container's /tmp (a tmpfs), bytes."
    )
    shm_bytes: int = Field(
        default=64 * MiB, ge=1 * MiB, description="Size of every container's /dev/shm, bytes."
    )
    connect_timeout: float = Field(
        default=5.0, gt=0, description="Seconds to reach the engine at start-up."
    )
    mirror: bool = Field(
        default=True,
        description="With volumes: mirror each room's volume and the hub's room directory "
        "through a monitor container, so that file viewers and editors work.",
    )
    mirror_image: str | None = Field(
        default=None, description="Monitor image (needs sh, find, md5sum, base64, awk); default: image."
    )
    mirror_interval: float = Field(default=0.25, gt=0, description="Seconds between the monitor's scans.")
    mirror_max_bytes: int = Field(default=1 * MiB, ge=1, description="Largest file mirrored, bytes.")


class RuntimeConfig(Model):
    default: RuntimeName = "process"
    bubblewrap: BubblewrapConfig = Field(default_factory=BubblewrapConfig)
    docker: DockerConfig = Field(default_factory=DockerConfig)


class ExecutorBase(Model):
    runtime: RuntimeName | None = Field(default=None, description="Default: runtime.default.")
    command: list[str] | str = Field(description="argv list, or a string split shell-style.")
    working_directory: str = Field(
        default=".", pattern=r"^[^/]", description="Relative to the room directory."
    )
    env: dict[str, str] = Field(default_factory=dict)
    tty: bool = False
    limits: ResourceLimits = Field(default_factory=ResourceLimits)
    image: str | None = Field(default=None, description="Container image (docker runtime).")
    container: ContainerOptions = Field(default_factory=ContainerOptions)

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


class WidgetsConfig(Model):
    """The widgets face: a browser UI driven from Python (``/widgets/``, ``/widgets/ws``)."""

    app: str | None = Field(
        default=None,
        description="The app: 'package.module:attribute' or 'file.py:attribute' (relative to the "
        "configuration file); the attribute is a roomhub.widgets.App.",
    )
    title: str = Field(default="roomhub widgets", description="The page's title.")
    max_sessions: int | None = Field(
        default=100, ge=1,
        description="Sessions kept; a new one ends the session whose browsers left longest ago, and "
        "is refused (1013) only when every session has a browser. None: unlimited.",
    )
    idle_timeout: float = Field(
        default=300.0, gt=0, description="Seconds a session without a browser is kept before it is reaped."
    )
    call_timeout: float = Field(default=10.0, gt=0, description="Seconds to wait for a browser's answer.")
    handshake_timeout: float = Field(default=10.0, gt=0, description="Seconds for the init handshake.")
    max_browsers_per_session: int = Field(default=16, ge=1)
    max_inflight_calls: int = Field(
        default=256, ge=1, le=100_000,
        description="Calls sent and not yet answered before a caller waits (flow control).",
    )
    upload_max_bytes: int = Field(default=64 * MiB, ge=1, description="Largest upload (all files).")
    upload_timeout: float = Field(
        default=30.0, gt=0, description="Seconds an upload may go without a chunk before it is dropped."
    )


class BackendsConfig(Model):
    """The backends face: HTTP services installed on demand, per partition, behind ``/backends``."""

    catalogs: list[Path] = Field(
        default_factory=list, description="Directories of backend packages (relative to this file)."
    )
    shipped: bool = Field(default=True, description="Also offer the backends that ship with roomhub.")
    grace_period: float = Field(
        default=10.0, ge=0, description="Seconds a tab may be away (a reload) before its backends stop."
    )
    idle_timeout: float = Field(
        default=900.0, gt=0, description="Seconds before unowned backends of a partition nobody uses stop."
    )
    ready_timeout: float = Field(default=60.0, gt=0, description="Seconds for GET / to answer 200.")
    build_timeout: float = Field(default=900.0, gt=0, description="Seconds for one build.")
    on_demand: bool = Field(
        default=True, description="Start a backend (and its dependencies) on its first proxied request."
    )
    docker_url: str | None = Field(default=None, description="Engine URL for docker backends.")
    limits: ResourceLimits = Field(
        default_factory=lambda: ResourceLimits(memory_bytes=None, cpu_seconds=None, pids=None,
                                               file_size_bytes=None, room_bytes=None),
        description="Limits of venv backends (none by default).",
    )


class ActionsFilesConfig(Model):
    """The actions face's file server (opt-in): GET/PUT/DELETE below ``root``."""

    enabled: bool = False
    root: Path | None = Field(default=None, description="Served folder; default: <data_dir>/actions-files.")
    prefix: str = Field(default="/actions/files", pattern=r"^/[A-Za-z0-9/_.-]*[A-Za-z0-9_.-]$")
    max_bytes: int = Field(default=16 * MiB, ge=1, description="Largest file read or written.")
    read_only: bool = False
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins (scheme://host[:port]) whose pages may use the file server (CORS: "
        "preflights answered, Access-Control-Allow-Origin sent); '*' allows any, as Igor did. "
        "Default: none, only the hub's own origin; writes from other origins get 403.",
    )

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not re.fullmatch(r"https?://[^/\s?#]+", origin):
                raise ValueError(f"{origin!r} is not '*' or an origin like https://example.org:8443")
        return [origin.lower() for origin in value]


class ActionsConfig(Model):
    """The actions face (Igor's message shapes on ``/actions``); present = enabled."""

    api: str | None = Field(default=None, description="Handlers and processes: 'package.module:API'.")
    pythonpath: list[Path] = Field(
        default_factory=list, description="Folders put in front of sys.path to import the API."
    )
    session_timeout: float = Field(default=10.0, gt=0, description="Seconds a session outlives its client.")
    max_sessions: int = Field(default=10000, ge=1)
    max_calls_per_client: int = Field(default=256, ge=1, description="Calls running at once per client.")
    max_calls_per_second: float = Field(
        default=5000.0, ge=0, description="Per client; past it the client is closed (1008). 0: no limit."
    )
    max_frame_bytes: int | None = Field(
        default=None, ge=64, description="Largest call frame; default: server.limits.max_frame_bytes."
    )
    thread_pool_size: int = Field(default=64, ge=1, description="Threads running plain-function handlers.")
    debug: bool = Field(
        default=False, description="Tracebacks in error frames (also on with log_level debug)."
    )
    files: ActionsFilesConfig = Field(default_factory=ActionsFilesConfig)


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


# -- the PostgreSQL document store ([documents.postgres]) -----------------------------------------
POSTGRES_DSN_ENV = "ROOMHUB_POSTGRES_DSN"
"""The environment variable that gives ``documents.postgres.dsn`` when the file does not (keeps a
password out of the configuration file)."""


class PostgresStoreConfig(Model):
    """The PostgreSQL document store, shared by the hubs of a cluster (group commit, as SQLite)."""

    dsn: str | None = Field(
        default=None,
        description="Connection URI, postgresql://user[:password]@host[:port]/dbname[?options]; "
        f"default: the environment variable {POSTGRES_DSN_ENV}.",
    )
    commit_window: float = Field(
        default=0.05, gt=0, le=5,
        description="Group commit window, seconds: the most a crash of the hub loses.",
    )
    pool_size: int = Field(default=4, ge=1, le=100, description="Most connections the store opens.")
    connect_timeout: float = Field(
        default=10.0, gt=0, description="Seconds the hub waits for the database at start before refusing."
    )

    @field_validator("dsn")
    @classmethod
    def _uri(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a URI starting with postgresql:// (e.g. postgresql://hub@db/roomhub)")
        return value


# ---------------------------------------------------------------------------------------------------
class DocumentsConfig(Model):
    """Shared Yjs documents at ``/yjs/<room>`` (y-websocket protocol)."""

    store: Literal["sqlite", "postgres", "memory"] = "sqlite"
    sqlite: SQLiteStoreConfig = Field(default_factory=SQLiteStoreConfig)
    postgres: PostgresStoreConfig = Field(default_factory=PostgresStoreConfig)
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

    @model_validator(mode="after")
    def _postgres_dsn(self) -> DocumentsConfig:
        if self.store == "postgres" and self.postgres.dsn is None:
            from_env = os.environ.get(POSTGRES_DSN_ENV)
            if not from_env:
                raise ValueError(
                    f'documents.postgres.dsn: required with store = "postgres" (or set {POSTGRES_DSN_ENV})'
                )
            try:
                self.postgres.dsn = PostgresStoreConfig._uri(from_env)
            except ValueError as exc:
                raise ValueError(f"documents.postgres.dsn (from {POSTGRES_DSN_ENV}): {exc}") from None
        return self


# -- several hubs sharing rooms ([cluster]) --------------------------------------------------------
class ClusterConfig(Model):
    """Hubs sharing one set of rooms through Redis: membership (a heartbeat key per hub) and room
    leases with fencing tokens. Absent: the hub runs alone."""

    redis: str = Field(description="Redis URL, redis://host:port/db (rediss:// for TLS, unix:///path).")
    advertise: str | None = Field(
        default=None,
        description="host:port other hubs and operators reach this hub at; default: server.host and "
        "the port the hub listens on (the real one when server.port is 0), which suits hubs on one "
        "machine.",
    )
    prefix: str = Field(
        default="roomhub", pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Start of every Redis key the hubs use (several clusters can share one Redis).",
    )
    lease_seconds: float = Field(
        default=5.0, ge=0.5, le=300,
        description="Seconds a hub's heartbeat and room leases live without renewal: a hub that "
        "stopped (killed, cut from Redis) is forgotten and its rooms can be taken after this long.",
    )
    heartbeat_seconds: float = Field(
        default=1.0, ge=0.05,
        description="Seconds between a hub's renewals of its heartbeat and leases; less than half of "
        "lease_seconds, so one lost renewal does not lose a lease.",
    )
    stream_length: int = Field(
        default=1000, ge=10, le=1_000_000,
        description="Entries each document's Redis Stream keeps (approximately, XADD MAXLEN ~): what "
        "a hub opening a document replays after loading the store.",
    )

    @field_validator("redis")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a URL starting with redis://, rediss:// or unix:// (e.g. redis://127.0.0.1:6379/0)")
        return value

    @field_validator("advertise")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is not None:
            host, sep, port = value.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in value:
                raise ValueError("must be host:port (e.g. 10.0.0.5:8000 or [::1]:8000)")
        return value

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> ClusterConfig:
        if self.heartbeat_seconds * 2 >= self.lease_seconds:
            raise ValueError(
                f"cluster.heartbeat_seconds ({self.heartbeat_seconds}) must be less than half of "
                f"cluster.lease_seconds ({self.lease_seconds})"
            )
        return self


# ---------------------------------------------------------------------------------------------------
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
