"""Interop fixtures: the Node clients are installed once per session."""

from __future__ import annotations

import pytest
from tests.documents.conftest import docs_config  # noqa: F401  (fixture)

from .node import ensure_node_modules


@pytest.fixture(scope="session", autouse=True)
def _node_modules() -> None:
    ensure_node_modules()
