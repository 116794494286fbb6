"""The widgets face's configuration: ``[widgets]``."""

from __future__ import annotations

from pydantic import Field

from ..core.config import MiB, Model


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
