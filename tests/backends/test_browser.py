"""The browser client in a real Chromium: the demo page installs both shipped backends with progress
shown, calls them, and a reload keeps the same partition and instances; the partition socket comes
back after a hub restart."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from e2e.browser_helpers import open_tabs
from roomhub.config import demo_config_path

pytestmark = pytest.mark.e2e
playwright_sync = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def page(browser) -> Iterator[object]:
    """A Chromium tab (in a context of its own); JavaScript errors thrown in it fail the test."""
    with open_tabs(browser) as (make, errors):
        page = make()
        page.set_default_timeout(60_000)  # type: ignore[attr-defined]
        yield page
    assert not errors, errors


def test_the_partition_socket_comes_back_after_the_hub_restarts(tmp_path: Path, hub_process, page) -> None:
    """backends.js reconnects the tab's partition socket (socket.js's backoff) to a hub started
    again on the same port, which greets it and holds the partition again."""
    config = tmp_path / "roomhub.toml"
    config.write_text("[backends]\ngrace_period = 30.0\n")
    first = hub_process(config)
    page.goto(f"{first.base}/api/health")
    partition = page.evaluate("""async () => {
        const { Backends } = await import("/static/backends.js");
        window.backends = new Backends();
        window.greetings = 0;
        backends.onEvent((event) => { if (event.type === "Partition") greetings += 1; });
        await backends.connect();
        return backends.partition;
    }""")
    assert page.evaluate("greetings") == 1
    first.stop()  # a graceful stop: the partition socket is closed before the hub exits
    again = hub_process(config, port=first.port)
    page.wait_for_function("() => greetings === 2", timeout=30_000)
    assert httpx.get(f"{again.base}/api/backends/partitions/{partition}").status_code == 200


def test_the_dashboard_reconnects_its_monitor_socket(tmp_path: Path, hub_process, page) -> None:
    """The dashboard's monitor socket (socket.js) comes back after the hub closed its room."""
    dashboard = demo_config_path().parent / "dashboard.html"
    config = tmp_path / "roomhub.toml"
    config.write_text(f'[backends]\n[pages."/dash"]\nhtml = {json.dumps(str(dashboard))}\n')
    hub = hub_process(config)
    page.goto(f"{hub.base}/dash")
    page.wait_for_function("() => document.getElementById('conn').textContent === 'live'")
    page.evaluate("() => { document.getElementById('conn').textContent = 'before the drop'; }")
    dropped = httpx.delete(f"{hub.base}/api/rooms/backends-monitor/all")
    assert dropped.json() == {"dropped": "all"}
    page.wait_for_function("() => document.getElementById('conn').textContent === 'live'")


def test_demo_page_installs_and_calls_both_backends(tmp_path: Path, hub_process, page) -> None:
    demo = demo_config_path().parent
    config = tmp_path / "roomhub.toml"
    config.write_text(
        "[backends]\ngrace_period = 30.0\n"
        f'[pages."/backends-demo"]\nhtml = {json.dumps(str(demo / "backends.html"))}\n'
    )
    hub = hub_process(config)
    page.goto(f"{hub.base}/backends-demo")
    partition = page.locator("#partition").inner_text()
    assert partition.startswith("tab-")
    page.click("#install")
    page.wait_for_function("document.querySelector('#status').textContent === 'installed'")
    progress = page.locator("#progress li")
    kinds = [(li.get_attribute("data-type"), li.get_attribute("data-event")) for li in progress.all()]
    for expected in [("DownloadBackendEvent", "started"), ("InstallBackendEvent", "started"),
                     ("InstallBackendEvent", "succeeded"), ("StartBackendEvent", "starting"),
                     ("StartBackendEvent", "listening")]:
        assert expected in kinds, kinds
    starting = kinds.index(("StartBackendEvent", "starting"))
    assert starting < kinds.index(("StartBackendEvent", "listening"))
    assert any(k == ("BackendLog", "") for k in kinds)  # build output lines were shown

    page.fill("#message", "Hi from Chromium")
    page.select_option("#character", "trex")
    page.click("#say")
    page.wait_for_function(
        "document.querySelector('#cow-output').textContent.includes('Hi from Chromium')")
    assert "\\" in page.locator("#cow-output").inner_text()
    page.click("#run")
    page.wait_for_function("document.querySelector('#run-output').textContent.includes('run number 1')")
    assert page.locator("#docs").get_attribute("href").endswith(f"/docs?backends-partition={partition}")

    instances = httpx.get(f"{hub.base}/api/backends/partitions/{partition}").json()["instances"]
    assert sorted(i["name"] for i in instances) == ["pyrun_backend", "roomhub_demo_backend"]
    assert {i["owner"] for i in instances} == {partition}

    # a reload keeps the tab's partition and its backends (the runner's state shows it)
    page.reload()
    assert page.locator("#partition").inner_text() == partition
    page.click("#install")
    page.wait_for_function("document.querySelector('#status').textContent === 'installed'")
    page.click("#run")
    page.wait_for_function("document.querySelector('#run-output').textContent.includes('run number 2')")
    again = httpx.get(f"{hub.base}/api/backends/partitions/{partition}").json()["instances"]
    assert {i["uid"] for i in again} == {i["uid"] for i in instances}
