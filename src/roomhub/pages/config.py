"""The pages face's configuration: ``[pages."<path>"]`` and its executors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from ..core.config import ContainerOptions, KiB, MiB, Model, ResourceLimits, RuntimeName


class ExecutorBase(Model):
    runtime: RuntimeName | None = Field(default=None, description="Default: runtime.default.")
    command: list[str] | str = Field(description="argv list, or a string split shell-style.")
    working_directory: str = Field(
        default=".", pattern=r"^[^/]", description="Relative to the room directory."
    )
    env: dict[str, str] = Field(default_factory=dict)
    tty: bool = False
    limits: ResourceLimits = Field(default_factory=ResourceLimits)
    image: str | None = Field(default=None, description="Container image (docker runtime).")
    container: ContainerOptions = Field(default_factory=ContainerOptions)

    @field_validator("command")
    @classmethod
    def _command_not_empty(cls, value: list[str] | str) -> list[str] | str:
        if not value or (isinstance(value, list) and not value[0]):
            raise ValueError("the command must not be empty")
        return value


class AlwaysExecutor(ExecutorBase):
    type: Literal["always"]
    scrollback_bytes: int = Field(default=64 * KiB, ge=0, description="Output kept for late joiners.")
    restart_delay: float = Field(default=0.5, ge=0, description="First restart delay, seconds.")
    restart_delay_max: float = Field(default=30.0, ge=0, description="Backoff cap, seconds.")
    stable_after: float = Field(
        default=10.0, ge=0, description="Run time after which the backoff resets, seconds."
    )


class OnceExecutor(ExecutorBase):
    type: Literal["once"]
    timeout: float = Field(default=60.0, gt=0, description="Seconds before a run is killed.")
    scrollback_bytes: int = Field(default=64 * KiB, ge=0)


class PrologueExecutor(ExecutorBase):
    type: Literal["prologue"]
    timeout: float = Field(default=30.0, gt=0)


class EpilogueExecutor(ExecutorBase):
    type: Literal["epilogue"]
    timeout: float = Field(default=30.0, gt=0)


class FileExecutor(Model):
    """A file of the room directory shown to viewers and written by editors.

    It speaks the interactive-widgets monitor's JSON lines, but the hub
    watches the file itself (watchfiles) instead of running a monitor.
    """

    type: Literal["file"]
    path: str = Field(description="Relative to the room directory.")
    initial: str | None = Field(default=None, description="Contents written when the room is created.")
    max_bytes: int = Field(default=1 * MiB, ge=1)
    debounce: float = Field(default=0.05, ge=0, description="Seconds to wait for a burst of writes.")

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        p = Path(value)
        if p.is_absolute() or ".." in p.parts or not value:
            raise ValueError("must be a relative path inside the room directory")
        return value


Executor = Annotated[
    AlwaysExecutor | OnceExecutor | PrologueExecutor | EpilogueExecutor | FileExecutor,
    Field(discriminator="type"),
]


class PageConfig(Model):
    title: str = ""
    html: Path = Field(description="The page's HTML file (relative to the configuration file).")
    grace_period: float = Field(default=0.0, ge=0, description="Seconds an empty room is kept.")
    executors: dict[str, Executor] = Field(default_factory=dict)

    @field_validator("executors")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not name or len(name) > 128:
                raise ValueError(f"executor name {name!r} must have 1 to 128 characters")
        return value
