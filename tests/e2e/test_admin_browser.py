"""The admin page (/admin) in Chromium: rooms of every face with their members, refreshed without a
reload, charts of the last minutes, and closing a room."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
from browser_helpers import require_vendor, wait_connected, wait_terminal
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

pytestmark = pytest.mark.e2e


def test_admin_shows_rooms_members_charts_and_closes_a_room(hub_process,
                                                            new_page: Callable[[], object]) -> None:
    require_vendor()
    hub = hub_process(None)  # the embedded demo: every face
    tutorial = new_page()
    tutorial.goto(f"{hub.base}/tutorial")  # type: ignore[attr-defined]
    tutorial.wait_for_url(re.compile(r"roomName="))  # type: ignore[attr-defined]
    wait_connected(tutorial)
    wait_terminal(tutorial, "room$")
    room = tutorial.url.split("roomName=")[1]  # type: ignore[attr-defined]

    admin = new_page()
    admin.goto(f"{hub.base}/admin")  # type: ignore[attr-defined]
    admin.evaluate("window.notReloaded = true")  # type: ignore[attr-defined]
    pages = admin.locator("section[data-face=pages]")  # type: ignore[attr-defined]
    pages.locator("code", has_text=room).wait_for()
    row = pages.locator("tr", has_text=room)
    assert "terminal (always): running" in row.inner_text()
    assert re.search(r"127\.0\.0\.1:\d+", row.inner_text())  # the member
    assert "1 connections" in pages.locator("h2").inner_text()

    # A document room and a second page room appear without a reload.
    editor = new_page()
    editor.goto(f"{hub.base}/editor?roomName=admin-doc")  # type: ignore[attr-defined]
    documents = admin.locator("section[data-face=documents]")  # type: ignore[attr-defined]
    documents.locator("tr", has_text="admin-doc").wait_for()
    assert re.search(r"document \d+ B", documents.locator("tr", has_text="admin-doc").inner_text())
    with connect(f"{hub.ws}/tutorial/ws?roomName=to-close&roomhub=1") as member:
        pages.locator("tr", has_text="to-close").wait_for()
        assert admin.evaluate("window.notReloaded") is True  # type: ignore[attr-defined]

        # The charts: four, drawn from the sampled history (a sample every 2 s).
        admin.wait_for_function(  # type: ignore[attr-defined]
            "() => [...document.querySelectorAll('figure[data-chart] polyline')]"
            ".every(l => l.getAttribute('points').split(' ').length >= 2)", timeout=15_000)
        assert admin.locator("figure[data-chart]").count() == 4  # type: ignore[attr-defined]
        caption = admin.locator("figure[data-chart=connections] figcaption")  # type: ignore[attr-defined]
        assert caption.inner_text().startswith("connections:")
        assert int(admin.locator("[data-total=connections] b").inner_text()) >= 3  # type: ignore[attr-defined]

        # An actions call's duration reaches the request latency chart.
        with connect(f"{hub.ws}/actions") as actions:
            actions.send('{"streamId": "1", "action": "demo.echo", "data": 1}')
            while '"close"' not in str(actions.recv(timeout=20)):
                pass
        admin.wait_for_function(  # type: ignore[attr-defined]
            "() => parseFloat(document.querySelector('figure[data-chart=\"request latency\"] figcaption')"
            ".textContent.match(/max ([0-9.]+)/)[1]) > 0", timeout=15_000)

        # Closing a room: the admin confirms, the hub closes its member and tears it down.
        admin.once("dialog", lambda dialog: dialog.accept())  # type: ignore[attr-defined]
        pages.locator("button[data-close='/tutorial to-close']").click()
        try:
            while True:
                member.recv(timeout=20)
        except ConnectionClosed:
            pass
        assert member.close_code == 1000 and member.close_reason == "room closed"
        pages.locator("tr", has_text="to-close").wait_for(state="detached")
    rooms = httpx.get(f"{hub.base}/api/rooms").json()
    assert not any(r["name"] == "to-close" for r in rooms)
    assert any(r["name"] == room for r in rooms)  # the other rooms are untouched

    # A foreign page may not close rooms (the door's origin check on a state-changing request).
    r = httpx.post(f"{hub.base}/api/admin/close", json={"namespace": "/tutorial", "room": room},
                   headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    r = httpx.post(f"{hub.base}/api/admin/close", json={"namespace": "/tutorial", "room": "no-such"})
    assert r.status_code == 404 and "no room" in r.json()["detail"]
    r = httpx.post(f"{hub.base}/api/admin/close", json={"namespace": "/tutorial"})
    assert r.status_code == 422
