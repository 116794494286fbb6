"""The backends face's configuration: ``[backends]``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from ..core.config import Model, ResourceLimits


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
