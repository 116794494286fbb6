"""Fixtures of the runtime suite (helpers live in ``runtime_helpers``)."""

from __future__ import annotations

import pytest
from runtime_helpers import RUNTIMES, require


def _param(name: str) -> object:
    marks = [getattr(pytest.mark, name)] if name != "process" else []
    return pytest.param(name, marks=marks)


@pytest.fixture(params=[_param(name) for name in RUNTIMES])
def runtime(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once per runtime (skipped locally / failed on CI when unusable)."""
    require(request.param)
    return request.param


@pytest.fixture
def docker_runtime() -> str:
    require("docker")
    return "docker"


@pytest.fixture
def bubblewrap_runtime() -> str:
    require("bubblewrap")
    return "bubblewrap"
