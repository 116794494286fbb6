"""The cluster's configuration: ``[cluster]`` (several hubs sharing rooms through Redis)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from ..core.config import Model


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
