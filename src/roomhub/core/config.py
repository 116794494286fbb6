"""The configuration sections every face shares: ``[server]`` (with ``[server.auth]`` and
``[server.limits]``) and ``[runtime]``, and :class:`Model`, the base of every section (unknown
keys are errors). Each face's own section is in its package (``pages/config.py``...);
:mod:`roomhub.config` composes them into the file's model."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

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
    send_buffer_bytes: int = Field(
        default=16 * MiB, ge=64 * KiB,
        description="Unsent bytes held for one WebSocket client (every face) before it is closed "
        "as a slow consumer (4008); what it is sent is dropped meanwhile, never waited for.",
    )
    send_high_water_bytes: int = Field(
        default=1 * MiB, ge=1 * KiB,
        description="Unsent bytes of one client from which producers that can wait (a program's "
        "output) pause until a member of the room is down to send_low_water_bytes again; at most "
        "send_buffer_bytes. Default: a quarter of send_buffer_bytes, at most 1 MiB.",
    )
    send_low_water_bytes: int = Field(
        default=256 * KiB, ge=0,
        description="Unsent bytes of one client at or below which it takes more again; below "
        "send_high_water_bytes. Default: a quarter of send_high_water_bytes.",
    )

    @model_validator(mode="before")
    @classmethod
    def _send_window(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if "send_queue_frames" in data:
            raise ValueError(
                "send_queue_frames (frames) was replaced by send_buffer_bytes (the bound past which "
                "a client is closed with 4008), send_high_water_bytes and send_low_water_bytes "
                "(bytes): remove it"
            )
        # The water marks' defaults follow the bound and each other (see the descriptions).
        bound, high = data.get("send_buffer_bytes"), data.get("send_high_water_bytes")
        if isinstance(bound, int) and bound >= 64 * KiB and high is None:
            high = min(1 * MiB, bound // 4)
            data = {**data, "send_high_water_bytes": high}
        if isinstance(high, int) and data.get("send_low_water_bytes") is None:
            data = {**data, "send_low_water_bytes": high // 4}
        return data

    @field_validator("send_high_water_bytes", "send_low_water_bytes")
    @classmethod
    def _water_marks(cls, value: int, info: ValidationInfo) -> int:
        # low < high <= bound; each mark is checked against the key before it.
        if info.field_name == "send_high_water_bytes":
            bound = info.data.get("send_buffer_bytes")
            if bound is not None and value > bound:
                raise ValueError(f"must be at most send_buffer_bytes ({bound})")
        else:
            high = info.data.get("send_high_water_bytes")
            if high is not None and value >= high:
                raise ValueError(f"must be below send_high_water_bytes ({high})")
        return value

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
