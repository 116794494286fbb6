"""The demo's shared editor in two Chromium tabs (Debian's chromium through Playwright), served by
three hubs of a cluster behind haproxy in round-robin: the page, its scripts and each tab's
WebSocket may come from any hub; the two tabs' sockets on two different hubs edit one text, see each
other's presence, and the third hub, which has neither tab, serves the stored text."""

from __future__ import annotations

import time

import httpx
import pytest

from balancer import ClusterBehindBalancer
from roomhub.app import node_modules_dir

pytestmark = pytest.mark.e2e

ENABLED = "#editor:not([disabled])"


def hub_of_new_tab(cluster: ClusterBehindBalancer, room: str, before: dict[int, int]) -> int:
    """The hub whose local members of ``room`` grew past ``before`` (polled for up to 10 s)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        grew = [i for i, n in cluster.local_members(room).items() if n > before.get(i, 0)]
        if grew:
            return grew[0]
        time.sleep(0.05)
    raise AssertionError(f"no hub got the tab's socket to {room}")


def users(page: object) -> set[str]:
    """The user names a tab's presence list shows (its own included)."""
    return set(page.evaluate(  # type: ignore[attr-defined]
        "() => [...document.querySelectorAll('#peers span')].map((s) => s.textContent)"))


def test_two_tabs_on_two_hubs_behind_haproxy_edit_one_text(browser, cluster_behind_haproxy):
    if not (node_modules_dir() / "y-websocket").is_dir():
        pytest.fail("browser libraries missing: run scripts/setup-web.sh")
    cluster = cluster_behind_haproxy(3)
    url = f"{cluster.balancer.base}/editor?roomName=lb"
    context = browser.new_context()
    errors: list[str] = []
    try:
        def tab() -> object:
            page = context.new_page()
            page.set_default_timeout(20_000)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url)
            page.wait_for_selector(ENABLED)
            return page

        first = tab()
        first_hub = hub_of_new_tab(cluster, "lb", {})
        # round-robin spreads the page's requests too: open the second tab again until its socket
        # is on another hub than the first's (at most a few turns of three hubs)
        for _ in range(6):
            before = cluster.local_members("lb")
            second = tab()
            second_hub = hub_of_new_tab(cluster, "lb", before)
            if second_hub != first_hub:
                break
            second.close()
            deadline = time.monotonic() + 10
            while sum(cluster.local_members("lb").values()) != 1 and time.monotonic() < deadline:
                time.sleep(0.05)
        assert second_hub != first_hub, "haproxy put both tabs' sockets on one hub six times"
        first.locator("#editor").click()
        first.keyboard.type("typed on one hub")
        second.wait_for_function("() => document.getElementById('editor').value === 'typed on one hub'")
        second.locator("#editor").press("End")
        second.keyboard.type(", and another")
        done = "typed on one hub, and another"
        first.wait_for_function(f"() => document.getElementById('editor').value === {done!r}")
        # presence crossed hubs: each tab lists the other's user besides its own (a closed tab's
        # user may linger up to y-websocket's 30 s awareness timeout: compare, do not count)
        deadline = time.monotonic() + 20
        while len(users(first) & users(second)) < 2:
            assert time.monotonic() < deadline, (users(first), users(second))
            time.sleep(0.1)
    finally:
        context.close()
    assert not errors, errors
    (third,) = {0, 1, 2} - {first_hub, second_hub}
    deadline = time.monotonic() + 10
    while (view := httpx.get(f"{cluster.hubs[third].base}/api/documents/lb").json()).get("content") != {
        "text": done
    } and time.monotonic() < deadline:
        time.sleep(0.1)
    assert view["content"] == {"text": done}
