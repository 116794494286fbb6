"""The documents face's configuration: ``[documents]``, ``[documents.sqlite]`` and
``[documents.postgres]``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

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
