"""Helpers of the browser tests: Chromium's options and waits on roomhub's widgets."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

from roomhub.app import node_modules_dir

TIMEOUT_MS = 20_000


@contextlib.contextmanager
def open_tabs(
    browser: object, *, console_errors: bool = False
) -> Iterator[tuple[Callable[[], object], list[str]]]:
    """A factory of tabs in one new browser context, and the list of the JavaScript errors thrown in
    any of them (and, with ``console_errors``, of the errors they logged to the console)."""
    context = browser.new_context(viewport={"width": 1200, "height": 1400})  # type: ignore[attr-defined]
    errors: list[str] = []

    def make() -> object:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))
        if console_errors:
            page.on("console", lambda msg: msg.type == "error"
                    and errors.append(f"{page.url}: console: {msg.text}"))
        return page

    try:
        yield make, errors
    finally:
        context.close()


def require_vendor() -> None:
    if not (node_modules_dir() / "@xterm" / "xterm").is_dir():
        pytest.fail("browser libraries missing: run scripts/setup-web.sh")


def terminal_text(page: object) -> str:
    return page.evaluate("document.querySelector('rh-terminal').text()")  # type: ignore[attr-defined]


def wait_terminal(page: object, needle: str) -> None:
    page.wait_for_function(  # type: ignore[attr-defined]
        "needle => document.querySelector('rh-terminal').text().includes(needle)", arg=needle
    )


def wait_connected(page: object) -> None:
    page.wait_for_function(  # type: ignore[attr-defined]
        "() => { const s = document.querySelector('rh-status');"
        " return s.dataset.state === 'open' && s.textContent.includes('Connected'); }"
    )


def code_text(page: object, element: str) -> str:
    return page.locator(f"{element} .cm-content").inner_text()  # type: ignore[attr-defined]


def wait_code(page: object, element: str, needle: str) -> None:
    page.wait_for_function(  # type: ignore[attr-defined]
        "([el, needle]) =>"
        " document.querySelector(el + ' .cm-content')?.textContent.includes(needle)",
        arg=[element, needle],
    )
