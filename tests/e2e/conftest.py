"""Fixtures of the browser tests: Debian's Chromium through Playwright, and its tabs."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from browser_helpers import TIMEOUT_MS

playwright_sync = pytest.importorskip("playwright.sync_api")




@pytest.fixture
def new_page(browser: object) -> Iterator[Callable[[], object]]:
    """Factory of tabs in one browser context; JavaScript errors in a page fail the test."""
    context = browser.new_context(viewport={"width": 1200, "height": 1400})  # type: ignore[attr-defined]
    errors: list[str] = []

    def make() -> object:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))
        return page

    yield make
    context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"
