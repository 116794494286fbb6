"""Helpers of the browser tests: Chromium's options and waits on roomhub's widgets."""

from __future__ import annotations

import pytest

from roomhub.app import node_modules_dir

TIMEOUT_MS = 20_000


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
