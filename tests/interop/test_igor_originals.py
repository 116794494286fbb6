"""Igor's own clients against the hub's /actions: its integration test module, unchanged but for
its addresses, with the websocket-client version its requirements pin; and the timer app's
Angular IgorService, unchanged, in Chromium."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hubtest import original, write_config

HERE = Path(__file__).resolve().parent


def pinned(requirements: Path, name: str) -> str:
    """The version ``requirements`` (Igor's is UTF-16) pins for ``name``."""
    raw = requirements.read_bytes()
    text = raw.decode("utf-16") if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else raw.decode()
    for line in text.splitlines():
        package, _, version = line.strip().partition("==")
        if package.lower() == name:
            return version
    raise AssertionError(f"{requirements} pins no {name}")


def test_igor_integration_tests_pass(tmp_path, hub_process):
    igor = original("cezary986+igor")
    tests = igor / "igor" / "test"
    websocket = pytest.importorskip("websocket", reason="websocket-client (the test extra) is missing")
    version = pinned(igor / "igor" / "requirements.txt", "websocket-client")
    assert websocket.__version__ == version, f"Igor's tests need websocket-client=={version}"
    config = write_config(
        tmp_path / "cfg",
        f"""
        [actions]
        api = "igor_api:API"
        pythonpath = ["{HERE}"]

        [actions.files]   # Igor's test serves its own folder
        enabled = true
        root = "{tests}"
        read_only = true
        """,
    )
    hub = hub_process(config)
    module = tests / "test_integration.py"
    report = tmp_path / "igor-tests.xml"
    env = {
        **os.environ,
        "PYTHONPATH": str(HERE),
        "ROOMHUB_IGOR_MODULE": str(module),
        "ROOMHUB_IGOR_WS": f"{hub.ws}/actions",
        "ROOMHUB_IGOR_FILES": f"{hub.base}/actions/files",
    }
    args = [
        sys.executable, "-m", "pytest", "-p", "igor_addresses", "--assert=plain", "-p", "no:cacheprovider",
        "-p", "no:asyncio",
        "-c", os.devnull, "--rootdir", str(igor), "--confcutdir", str(igor), "--timeout", "60",
        "-v", f"--junitxml={report}", str(module),
    ]
    run = subprocess.run(args, cwd=tests, env=env, capture_output=True, text=True, timeout=300)
    output = run.stdout + run.stderr
    suite = ET.parse(report).getroot().find("testsuite")
    counts = {key: int(suite.get(key)) for key in ("tests", "failures", "errors", "skipped")}
    assert counts == {"tests": 5, "failures": 0, "errors": 0, "skipped": 0}, output
    assert run.returncode == 0, output


TIMER_SESSION = """async ({serverAddress, fileServerAddress}) => {
    // as the timer app's environment configures it, but for the addresses
    const igor = startIgorService({serverAddress, clientId: "timerApp", maxRetry: 3});
    const values = (observable) => new Promise((resolve, reject) => {
        const seen = [];
        observable.subscribe({next: (v) => seen.push(v), error: reject, complete: () => resolve(seen)});
    });
    const added = await values(igor.dispatch("events.add", {name: "Holidays", date: "2027-07-01"}));
    const [first, second] = await Promise.all([
        values(igor.dispatch("events.get")), values(igor.dispatch("events.add", {name: "Exam"})),
    ]);
    // as EventsService.setEventBackgroundImage: POST the picture, then tell the backend
    const picture = new File([new Uint8Array([255, 216, 255, 224])], "bg.jpg", {type: "image/jpeg"});
    const name = "event-1-bg.jpg";
    const posted = await fetch(`${fileServerAddress}/resources/${name}`, {method: "POST", body: picture});
    const saved = [posted.status, (await posted.json()).message];
    const changed = await values(igor.dispatch(
        "events.set_background_image", {eventId: 1, filePath: `resources/${name}`}));
    const shown = await fetch(`${fileServerAddress}/resources/${name}`);  // as the background's url()
    const events = await values(igor.dispatch("events.get"));
    return {added, first, second, saved, changed, shownBytes: (await shown.arrayBuffer()).byteLength,
            events};
}"""


def test_the_timer_apps_igor_service_in_chromium(tmp_path, hub_process, browser):
    """The timer app's IgorService (Angular 9, RxJS 6, as its package.json pins them), bundled at
    test time by esbuild from the unpacked snapshot, on a page of another loopback origin (as the
    app's dev server): calls, concurrent calls, and a picture upload to the file server."""
    timer = original("cezary986+timer")
    service = timer / "frontend" / "src" / "app" / "igor" / "igor.service.ts"
    assert service.is_file(), service
    bundle = tmp_path / "igor-service.js"
    subprocess.run(
        [
            str(HERE / "node_modules" / ".bin" / "esbuild"), str(HERE / "igor_service.js"), "--bundle",
            "--format=iife", '--tsconfig-raw={"compilerOptions":{"experimentalDecorators":true}}',
            f"--outfile={bundle}", "--log-level=warning",
        ],
        env={**os.environ, "NODE_PATH": str(HERE / "node_modules")},
        check=True, timeout=120,
    )
    app_page = '<!doctype html><link rel="icon" href="data:,"><title>timer</title>'
    # A second hub (the page's own origin), with a data directory of its own: one hub each.
    app = hub_process(write_config(tmp_path / "app", '[pages."/timer"]\nhtml = "page.html"\n', app_page),
                      "--data-dir", str(tmp_path / "app-data"))
    config = write_config(
        tmp_path / "cfg",
        f"""
        [server]
        allowed_origins = ["{app.base}"]

        [actions]
        api = "timer_api:API"
        pythonpath = ["{HERE}"]

        [actions.files]
        enabled = true
        root = "{tmp_path / 'files'}"
        allowed_origins = ["{app.base}"]
        """,
    )
    hub = hub_process(config)
    page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text} {m.location}"))
    try:
        page.goto(f"{app.base}/timer")
        page.add_script_tag(path=str(bundle))
        result = page.evaluate(
            TIMER_SESSION,
            {"serverAddress": f"{hub.ws}/actions", "fileServerAddress": f"{hub.base}/actions/files"},
        )
    finally:
        page.close()
    holidays = {"name": "Holidays", "date": "2027-07-01", "id": 1}
    assert result["added"] == [holidays]
    assert result["first"] == [[holidays]] and result["second"] == [{"name": "Exam", "id": 2}]
    assert result["saved"] == [201, "File saved."] and result["changed"] == [None]
    assert result["shownBytes"] == 4
    assert result["events"] == [[{**holidays, "backgroundImage": "resources/event-1-bg.jpg"},
                                 {"name": "Exam", "id": 2}]]
    assert (tmp_path / "files" / "resources" / "event-1-bg.jpg").read_bytes() == b"\xff\xd8\xff\xe0"
    assert problems == []
