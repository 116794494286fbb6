"""The documents face's configuration: ``[documents]`` and ``[documents.sqlite]``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from ..core.config import Model


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
