"""The renderer (pgwidgets-js) in a real Chromium (Playwright): click, reload, upload."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from widgets_helpers import serve_app

from hubtest import CHROMIUM, CHROMIUM_ARGS
from roomhub.widgets import App, WidgetSession

pytestmark = pytest.mark.e2e



HAVE_CHROMIUM = os.path.exists(CHROMIUM)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    playwright_api = pytest.importorskip("playwright.async_api")
    if not HAVE_CHROMIUM:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    async with playwright_api.async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


def demo_app(uploads: list[Any]) -> App:
    app = App()

    @app.on_connect
    async def setup(session: WidgetSession) -> None:
        W = session.widgets
        top = await W.TopLevel(title="E2E")
        box = await W.VBox()
        label = await W.Label("Not clicked")
        btn = await W.Button("Click me")
        check = await W.CheckBox("Remember")
        dialog = await W.FileDialog()
        upload = await W.Button("Upload")
        status = await W.Label("No file")
        for w in (label, btn, check, upload, status):
            await box.add_widget(w, 0)
        clicks = {"n": 0}

        async def clicked() -> None:
            clicks["n"] += 1
            await label.set_text(f"Clicked {clicks['n']}")

        async def uploaded(payload: dict[str, Any]) -> None:
            f = payload["files"][0]
            uploads.append(f)
            await status.set_text(f"Got {f['name']}: {len(f['data'])} bytes")

        btn.on("activated", clicked)
        check.on("activated", lambda state: None)
        dialog.on("activated", uploaded)
        upload.on("activated", dialog.open)
        await top.set_widget(box)
        await top.show()

    return app


async def test_click_reload_and_upload(browser: Any, tmp_path: Path) -> None:
    uploads: list[Any] = []
    async with serve_app(demo_app(uploads), tmp_path) as h:
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(f"{h.base}/widgets/")
        await page.get_by_role("button", name="Click me").click()
        await page.get_by_text("Clicked 1").wait_for(timeout=10_000)
        await page.get_by_role("checkbox").check()
        session_url = page.url
        assert "session=" in session_url and "token=" in session_url

        # Reload: the same session is replayed, the UI looks as it did.
        registry = h.hub.face("widgets").registry
        async with asyncio.timeout(5):
            while not any(s.state.get(5, {}).get("state") for s in registry.rooms.values()):
                await asyncio.sleep(0.02)
        await page.reload()
        await page.get_by_text("Clicked 1").wait_for(timeout=10_000)
        assert await page.get_by_role("checkbox").is_checked()
        assert len(registry.rooms) == 1
        await page.get_by_role("button", name="Click me").click()
        await page.get_by_text("Clicked 2").wait_for(timeout=10_000)

        # Upload through the FileDialog's input: chunked binary frames, 1.2 MB.
        data = bytes(range(256)) * 4700
        path = tmp_path / "upload.bin"
        path.write_bytes(data)
        await page.get_by_role("button", name="Upload").click()
        await page.locator("input[type=file]").set_input_files(str(path))
        await page.get_by_text(f"Got upload.bin: {len(data)} bytes").wait_for(timeout=15_000)
        assert uploads[0]["data"] == data
        assert errors == []


async def test_demo_page_renders(browser: Any, tmp_path: Path) -> None:
    from roomhub.demo.demo_widgets import app

    async with serve_app(app, tmp_path) as h:
        page = await browser.new_page(viewport={"width": 1100, "height": 760})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(f"{h.base}/widgets/")
        await page.locator("input.textentry-widget").fill("Grace Hopper")
        await page.get_by_role("button", name="Add person").click()
        await page.get_by_text("Grace Hopper", exact=True).wait_for(timeout=10_000)
        await page.get_by_role("button", name="Run a job").click()
        await page.get_by_text("Job done.").wait_for(timeout=15_000)
        await page.locator(".progressbar-widget", has_text="100%").wait_for(timeout=10_000)
        assert errors == []


def every_class_app(made: list[str]) -> App:
    """Every class of pgwidgets-js's table, visual ones placed in one scrolled column."""
    from roomhub.widgets.renderer import widget_defs

    windows = {"TopLevel", "Page", "Dialog", "ColorDialog", "MDISubWindow"}
    app = App()

    @app.on_connect
    async def setup(session: WidgetSession) -> None:
        W = session.widgets
        top = await W.TopLevel(title="Every class", resizable=True)
        await top.resize(900, 700)
        scroll = await W.ScrollArea()
        column = await W.VBox()
        source = await W.TextSource("text")
        for cls, defn in widget_defs().items():
            if cls == "TextBufferRef":
                widget = await W.TextBufferRef(source, 0, "left")
            elif cls == "Dialog":
                widget = await W.Dialog("A dialog", [["OK", 1]])
            elif cls == "MDISubWindow":  # made by the browser, around an MDIWidget's child
                mdi = await W.MDIWidget()
                await column.add_widget(mdi, 0)
                widget = await mdi.add_widget(await W.Label("inside"), {"title": "A window"})
                assert widget.cls == "MDISubWindow"
            else:
                widget = await getattr(W, cls)()
            if defn["base"] != "callback" and cls not in windows:
                await column.add_widget(widget, 0)
            made.append(cls)
        await scroll.set_widget(column)
        await top.set_widget(scroll)
        await top.show()

    return app


async def test_every_class_renders(
    browser: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    made: list[str] = []
    async with serve_app(every_class_app(made), tmp_path) as h:
        page = await browser.new_page(viewport={"width": 1000, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        await page.goto(f"{h.base}/widgets/")
        await page.get_by_text("Every class").first.wait_for(timeout=10_000)
        session = next(iter(h.hub.face("widgets").registry.rooms.values()))
        async with asyncio.timeout(20):
            while len(made) < 52 or session._pending:  # every call answered
                await asyncio.sleep(0.05)
        browser_errors = [r.getMessage() for r in caplog.records if "browser error" in r.getMessage()]
        assert browser_errors == [] and errors == []
        assert len(set(made)) == 52
