"""Fixtures of the browser tests: Debian's Chromium through Playwright, and its tabs."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from browser_helpers import TIMEOUT_MS

from hubtest import CHROMIUM, CHROMIUM_ARGS

playwright_sync = pytest.importorskip("playwright.sync_api")


# Module scope: sync Playwright keeps an event loop running in this thread while it is open,
# which asyncio tests of other modules cannot share.
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: apt-get install -y chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with playwright_sync.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


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
