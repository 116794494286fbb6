"""The demo's shared editor in two headless Chromium tabs (Debian's chromium, Playwright)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hubtest import write_config

pytestmark = pytest.mark.e2e

EDITOR = Path(__file__).resolve().parents[2] / "src" / "roomhub" / "demo" / "editor.html"
MODULES = EDITOR.parent.parent / "web" / "documents" / "node_modules"


def test_two_tabs_edit_one_text(hub_process, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium (apt-get install chromium)")
    if not (MODULES / "y-websocket").is_dir():
        pytest.fail("browser modules missing: run scripts/setup-interop.sh")
    config = write_config(
        tmp_path / "conf",
        f"""
        [documents]
        [pages."/editor"]
        html = "{EDITOR}"
    """,
    )
    hub = hub_process(config)
    url = f"{hub.base}/editor?roomName=e2e"
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium)
        try:
            first, second = browser.new_page(), browser.new_page()
            for page in (first, second):
                page.goto(url)
                page.wait_for_selector("#editor:not([disabled])", timeout=15000)
            first.locator("#editor").click()
            first.keyboard.type("hello from tab one")
            second.wait_for_function(
                "() => document.getElementById('editor').value === 'hello from tab one'"
            )
            second.locator("#editor").press("End")
            second.keyboard.type(", and two")
            first.wait_for_function(
                "() => document.getElementById('editor').value === 'hello from tab one, and two'"
            )
            assert first.locator("#peers span").count() == 2
        finally:
            browser.close()
    import httpx

    view = httpx.get(f"{hub.base}/api/documents/e2e").json()
    assert view["content"] == {"text": "hello from tab one, and two"}
