"""What a page's rooms need from the hub (:class:`PageContext`), and what its executors use of a
room (:class:`ExecutorRoom`): below the room and the executors, which both import it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..jsonlimits import DEFAULT_MAX_DEPTH
from ..runtimes.base import Runtime
from ..transport.traffic import Frame
from .config import PageConfig

if TYPE_CHECKING:
    from ..core.metrics import HubMetrics


@dataclass
class PageContext:
    """What a page's rooms need from the hub."""

    path: str
    page: PageConfig
    runtimes: dict[str, Runtime]
    default_runtime: str
    rooms_dir: Path
    hub_id: str
    max_json_depth: int = DEFAULT_MAX_DEPTH  # levels of a client's JSON (server.limits.max_json_depth)
    metrics: HubMetrics | None = None  # executor starts, restarts and exits are counted there


class ExecutorRoom(Protocol):
    """What an executor uses of its room (:class:`~roomhub.pages.room.PageRoom`)."""

    name: str
    ctx: PageContext
    directory: Path  # the room's working directory

    def labels(self, executor: str | None = None) -> dict[str, str]:
        """Labels of what the room starts (containers): hub, room and executor."""
        ...

    def runtime_for(self, config: Any) -> Runtime:
        """The runtime an executor's configuration names, else the page's default."""
        ...

    def broadcast(self, frame: Frame) -> None:
        """Send ``frame`` to every member."""
        ...

    def broadcast_addition(self, frame: Frame, plain: Frame | None = None) -> None:
        """Send ``frame`` to members that asked for additions, ``plain`` (if any) to the others."""
        ...

    async def wait_writable(self) -> None:
        """Wait until at least one member can take more frames."""
        ...
