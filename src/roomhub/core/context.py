"""What a face receives from the hub that composes it: :class:`FaceContext`.

A face is built from a context, never from the hub: the configuration, the bus,
the limits, the data directory, the hub's id, the runtimes, the connection
limiter, the door and the tokens of the programs the hub started. The hub
builds one context and hands it to every face it composes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..runtimes import Runtime
from ..transport.security import Door
from ..transport.traffic import Traffic
from .bus import Bus
from .config import LimitsConfig
from .errors import CloseCode
from .metrics import HubMetrics
from .relay import RoomRelay

if TYPE_CHECKING:  # the file's model composes every face's section: a type here, nothing more
    from ..config import HubConfig


class ConnectionLimiter:
    """Counts open WebSocket connections against ``limits.max_connections``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    @property
    def full(self) -> bool:
        """True while ``limit`` connections are open."""
        return self.count >= self.limit

    def try_acquire(self, traffic: Traffic | None = None) -> bool:
        """Count one more connection; False (nothing counted) when ``limit`` are open, the
        refusal then counted in ``traffic`` (the face's) as a close with 1013."""
        if self.count >= self.limit:
            if traffic is not None:
                traffic.closing(CloseCode.TRY_AGAIN_LATER)
            return False
        self.count += 1
        return True

    def release(self) -> None:
        """Count one connection fewer (never below 0)."""
        self.count = max(0, self.count - 1)


@dataclass(eq=False)
class FaceContext:
    """What a face takes from the hub.

    ``config``: the whole hub configuration (a face reads its own section and
    ``server``); ``bus``: where rooms publish; ``data_dir``: the hub's data
    directory (a face keeps its files in a folder of its own there); ``hub_id``:
    the stable id that labels what this hub starts (containers, volumes);
    ``runtimes``: by name (``process``, ``bubblewrap``, ``docker``);
    ``connections``: the limiter every WebSocket counts against; ``door``: the
    Host, origin and token checks; ``program_tokens``: tokens of the programs the
    hub started that may call it (None when the hub asks for no token); ``metrics``: the hub's
    Prometheus metrics (a face records its events there, its sockets count their traffic);
    ``cluster``: this hub's :class:`roomhub.cluster.Cluster` (config, run id, Redis), None when
    the hub runs alone; ``relay``: the rooms this hub holds in the cluster and the relaying of
    the others' members (:class:`~roomhub.core.relay.RoomRelay`), None when it runs alone.
    """

    config: HubConfig
    bus: Bus
    data_dir: Path
    hub_id: str
    runtimes: dict[str, Runtime]
    connections: ConnectionLimiter
    door: Door
    program_tokens: set[str] | None
    metrics: HubMetrics = field(default_factory=HubMetrics)
    cluster: Any = None
    relay: RoomRelay | None = None

    @property
    def limits(self) -> LimitsConfig:
        """``server.limits`` of the configuration."""
        return self.config.server.limits
