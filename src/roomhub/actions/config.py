"""The actions face's configuration: ``[actions]`` and ``[actions.files]``."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator

from ..core.config import MiB, Model


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
