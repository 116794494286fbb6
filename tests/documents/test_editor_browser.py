"""The demo's shared editor in two headless Chromium tabs (Debian's chromium, Playwright) and a
pycrdt client, all editing one document."""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path

import httpx
import pytest
from pycrdt import Text

from hubtest import eventually, write_config
from roomhub.app import node_modules_dir

from .ycl import y_client

pytestmark = pytest.mark.e2e

EDITOR = Path(__file__).resolve().parents[2] / "src" / "roomhub" / "demo" / "editor.html"


class PycrdtEditor(threading.Thread):
    """A pycrdt client in its own thread and event loop: waits for ``before``, appends ``ours``,
    then stays until the text is ``until`` (the browsers' next edit reached it)."""

    def __init__(self, ws_base: str, room: str, before: str, ours: str, until: str) -> None:
        super().__init__(daemon=True)
        self.args = (ws_base, room, before, ours, until)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self.edit(*self.args))
        except BaseException as exc:  # reported by the test
            self.error = exc

    @staticmethod
    async def edit(ws_base: str, room: str, before: str, ours: str, until: str) -> None:
        async with y_client(ws_base, room) as client:
            text = client.doc.get("text", type=Text)
            await eventually(lambda: str(text) == before, within=20, what=f"pycrdt sees {before!r}")
            text.insert(len(text), ours)
            await eventually(lambda: str(text) == until, within=20, what=f"pycrdt sees {until!r}")


def test_two_tabs_and_a_pycrdt_client_edit_one_text(hub_process, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium (apt-get install chromium)")
    if not (node_modules_dir() / "y-websocket").is_dir():
        pytest.fail("browser libraries missing: run scripts/setup-web.sh")
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
            # a pycrdt client joins the same document: its edit reaches the tabs, theirs reach it
            done = "hello from tab one, and two, and pycrdt!"
            python = PycrdtEditor(hub.ws, "e2e", "hello from tab one, and two", ", and pycrdt", done)
            python.start()
            for page in (first, second):
                page.wait_for_function(
                    "() => document.getElementById('editor').value.endsWith(', and pycrdt')", timeout=20000
                )
            second.locator("#editor").press("End")
            second.keyboard.type("!")
            python.join(30)
            assert not python.is_alive() and python.error is None, python.error
            first.wait_for_function(f"() => document.getElementById('editor').value === {done!r}")
        finally:
            browser.close()
    view = httpx.get(f"{hub.base}/api/documents/e2e").json()
    assert view["content"] == {"text": "hello from tab one, and two, and pycrdt!"}
