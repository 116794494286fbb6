"""Runtimes: where programs run. See :mod:`roomhub.runtimes.base` for the interface."""

from __future__ import annotations

from ..core.config import RuntimeConfig
from .base import ProgramHandle, ProgramSpec, Runtime, RuntimeUnavailable


def make_runtimes(config: RuntimeConfig, hub_id: str) -> dict[str, Runtime]:
    """Build every runtime the configuration can use, keyed by name.

    Runtimes are created lazily by name so that an unused one (e.g. docker
    without an engine) costs nothing.
    """
    from .process import ProcessRuntime

    runtimes: dict[str, Runtime] = {"process": ProcessRuntime()}
    try:
        from .bubblewrap import BubblewrapRuntime
    except ImportError:  # pragma: no cover - module always shipped
        pass
    else:
        runtimes["bubblewrap"] = BubblewrapRuntime(config.bubblewrap, hub_id)
    try:
        from .docker import DockerRuntime
    except ImportError:
        pass
    else:
        runtimes["docker"] = DockerRuntime(config.docker, hub_id)
    return runtimes


__all__ = ["ProgramHandle", "ProgramSpec", "Runtime", "RuntimeUnavailable", "make_runtimes"]
