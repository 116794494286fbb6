"""The browser client (web/actions.js) in a real Chromium, against a real hub."""

from __future__ import annotations

import pytest
from actions_helpers import actions_config, file_server_config

from hubtest import CHROMIUM, CHROMIUM_ARGS, serve_in_loop
from roomhub.config import demo_config_path

pytestmark = pytest.mark.e2e


PAGE = """<!doctype html><meta charset="utf-8"><title>t</title>
<script type="module">
import { hub, ActionError } from "/static/actions.js";
window.hub = hub;
window.ActionError = ActionError;
window.sessions = [];
hub.actions.onSession((s) => window.sessions.push(s));
window.ready = hub.actions.connect();
</script>"""


@pytest.fixture
async def browser():
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
async def page(tmp_path, in_process_hub, browser):
    config = actions_config(
        tmp_path / "cfg",
        "session_timeout = 5",
        more="""
[pages."/t"]
html = "page.html"
""",
    )
    (config.parent / "page.html").write_text(PAGE)
    async with in_process_hub(config) as h:
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"{h.base}/t")
        await page.wait_for_function("window.ready !== undefined")
        await page.evaluate("window.ready")
        page.hub_base = h.base
        yield page
        assert errors == []
        await page.close()


async def test_call_streams_frames_and_a_promise_of_the_whole(page):
    result = await page.evaluate("""async () => {
        const frames = [];
        for await (const f of hub.actions.call("count")) frames.push(f);
        const call = hub.actions.call("progress", 3);
        return { frames, whole: await call.result, last: await call.value,
                 awaited: await hub.actions.call("nested.deeper.echo", {a: "é"}) };
    }""")
    assert result == {
        "frames": [0, 1, 2],
        "whole": [{"progress": 0}, {"progress": 1}, {"progress": 2}, {"total": 3}],
        "last": {"total": 3},
        "awaited": [{"a": "é"}],
    }


async def test_errors_reject_with_the_code(page):
    result = await page.evaluate("""async () => {
        const out = {};
        const frames = [];
        try { for await (const f of hub.actions.call("fail", 1)) frames.push(f); }
        catch (e) { out.iter = [e.name, e.message, e.code, frames]; }
        try { await hub.actions.call("nope").result; }
        catch (e) { out.unknown = [e.code, e.message]; }
        try { await hub.actions.call("add", {x: 1}).value; } catch (e) { out.shape = e.code; }
        out.after = await hub.actions.call("echo", "fine").value;
        return out;
    }""")
    assert result["iter"] == ["ActionError", "boom: 1", 500, ["before"]]
    assert result["unknown"] == [404, 'No handler for action: "nope"']
    assert result["shape"] == 422 and result["after"] == "fine"


async def test_cancel_stops_the_handler(page):
    result = await page.evaluate("""async () => {
        const call = hub.actions.call("forever_sync");
        const frames = [];
        for await (const f of call) { frames.push(f); if (frames.length === 2) call.cancel(); }
        return { cancelled: call.cancelled, some: frames.length >= 2 };
    }""")
    assert result == {"cancelled": True, "some": True}


async def test_process_messages(page):
    ticks = await page.evaluate("""() => new Promise((resolve) => {
        const seen = [];
        const off = hub.actions.on("ticker", (data, action) => {
            seen.push([action, typeof data.n]);
            if (seen.length === 3) { off(); resolve(seen); }
        });
    })""")
    assert ticks == [["tick", "number"]] * 3


async def test_reconnect_resumes_the_session(page):
    result = await page.evaluate("""async () => {
        await hub.actions.call("session.set", {color: "green"}).result;
        const first = window.sessions.length;
        hub.actions.socket.ws.close();   // the connection drops
        // queued, sent after the reconnect
        const value = await hub.actions.call("session.get").value;
        return { value, resumed: window.sessions.slice(first).map((s) => s.resumed),
                 same: window.sessions[0].id === window.sessions[window.sessions.length - 1].id };
    }""")
    assert result == {"value": {"color": "green"}, "resumed": [True], "same": True}
    await page.reload()  # the session id and token survive a reload (sessionStorage)
    await page.wait_for_function("window.ready !== undefined")
    session = await page.evaluate("window.ready")
    assert session["resumed"] is True
    assert await page.evaluate('hub.actions.call("session.get").value') == {"color": "green"}


async def test_demo_page(tmp_path, in_process_hub, browser):
    async with in_process_hub(demo_config_path()) as h:
        page = await browser.new_page()
        await page.goto(f"{h.base}/actions-demo")
        await page.wait_for_function(
            "/^[0-9]+$/.test(document.getElementById('counter').textContent)", timeout=15000
        )
        await page.click("#run")
        await page.wait_for_function(
            "document.getElementById('progress-status').textContent.startsWith('done')",
            timeout=15000,
        )
        assert await page.evaluate("document.getElementById('bar').value") == 10
        await page.click("#run")
        await page.wait_for_function("document.getElementById('bar').value >= 1", timeout=15000)
        await page.click("#cancel")
        await page.wait_for_function(
            "document.getElementById('progress-status').textContent === 'cancelled'", timeout=15000
        )
        await page.fill("#name", "Ada")
        await page.click("#save-name")
        await page.click("#visit")
        await page.wait_for_function(
            "document.getElementById('visits').textContent.includes('Ada')", timeout=15000
        )
        await page.close()


async def test_a_session_taken_over_elsewhere_starts_a_fresh_one(page, browser):
    """A duplicated tab resumes the same session: the first tab gets 4009 and starts afresh."""
    first = await page.evaluate("window.ready")
    other = await browser.new_page()
    await other.goto(page.url)
    await other.wait_for_function("window.ready !== undefined")
    await other.evaluate("window.ready")  # its own session is saved: now overwrite it
    await other.evaluate(
        "(s) => sessionStorage.setItem('roomhub.actions.session', JSON.stringify(s))",
        {"id": first["id"], "token": first["token"]},
    )
    await other.reload()
    await other.wait_for_function("window.ready !== undefined")
    taken = await other.evaluate("window.ready")
    assert taken["resumed"] is True and taken["id"] == first["id"]
    await page.wait_for_function("window.sessions.length >= 2", timeout=15000)
    fresh = await page.evaluate("window.sessions[window.sessions.length - 1]")
    assert fresh["resumed"] is False and fresh["id"] != first["id"]
    assert await page.evaluate('hub.actions.call("echo", 5).value') == 5
    await other.close()


async def test_a_page_of_an_allowed_origin_uploads_a_file(tmp_path, browser):
    """As the timer app posts a picture to Igor's file server: a cross-origin POST of a File, whose
    type (image/jpeg) makes Chromium send a preflight first; another origin is refused. The app's
    pages come from a second hub on loopback (Chromium lets only loopback pages reach loopback)."""
    upload = """async (url) => {
        const file = new File([new Uint8Array([255, 216, 255])], "bg.jpg", {type: "image/jpeg"});
        try {
            const answer = await fetch(url, {method: "POST", body: file});
            return [answer.status, (await answer.json()).message];
        } catch (e) { return ["refused", e.name]; }
    }"""
    async with serve_in_loop(actions_config(tmp_path / "app"), tmp_path / "app-data") as app:
        config = file_server_config(tmp_path / "cfg", tmp_path / "files", f'allowed_origins = ["{app.base}"]')
        async with serve_in_loop(config, tmp_path / "data") as h:
            page = await browser.new_page()
            await page.goto(f"{app.base}/api/health")
            url = f"{h.base}/actions/files/resources/bg.jpg"
            assert await page.evaluate(upload, url) == [201, "File saved."]
            assert (tmp_path / "files" / "resources" / "bg.jpg").read_bytes() == b"\xff\xd8\xff"
            await page.goto(f"http://localhost:{app.port}/api/health")  # the same app, another origin
            assert await page.evaluate(upload, url.replace("bg.jpg", "other.jpg")) == ["refused", "TypeError"]
            assert not (tmp_path / "files" / "resources" / "other.jpg").exists()
            await page.close()
