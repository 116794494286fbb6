"""Fixtures of the browser tests: Debian's Chromium through Playwright, and its tabs."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from browser_helpers import open_tabs

playwright_sync = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def new_page(browser: object) -> Iterator[Callable[[], object]]:
    """Factory of tabs in one browser context; JavaScript errors in a page fail the test."""
    with open_tabs(browser) as (make, errors):
        yield make
    assert not errors, f"JavaScript errors in the page: {errors}"
