"""Fixtures of the documents tests: hub configurations with a ``[documents]`` section."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from hubtest import write_config


@pytest.fixture
def docs_config(tmp_path: Path) -> Callable[..., Path]:
    """``docs_config(extra_toml="", grace_period=0.2, store="sqlite")`` -> a config file path."""

    def make(extra: str = "", grace_period: float = 0.2, store: str = "sqlite") -> Path:
        body = f'[documents]\nstore = "{store}"\ngrace_period = {grace_period}\n{extra}\n'
        return write_config(tmp_path / "conf", body)

    return make
