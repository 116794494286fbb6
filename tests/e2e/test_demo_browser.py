"""The embedded demo in a real headless Chromium (Debian's), driven by Playwright.

The hub runs as a subprocess (``roomhub serve`` with no configuration: the
embedded demo); the browser loads the tutorial page, the browser libraries
from npm (through the import map) and talks to the room socket.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from browser_helpers import code_text, require_vendor, wait_code, wait_connected, wait_terminal

pytestmark = pytest.mark.e2e


def open_room(new_page: Callable[[], object], base: str) -> tuple[object, object, str]:
    """Two tabs in one room: the first gets a random roomName, the second opens its URL."""
    first = new_page()
    first.goto(f"{base}/tutorial")  # type: ignore[attr-defined]
    first.wait_for_url(re.compile(r"roomName="))  # type: ignore[attr-defined]
    url = first.url  # type: ignore[attr-defined]
    second = new_page()
    second.goto(url)  # type: ignore[attr-defined]
    for page in (first, second):
        wait_connected(page)
        wait_terminal(page, "room$")
    return first, second, url


def test_two_tabs_share_terminal_button_and_file(hub_process, new_page, tmp_path: Path) -> None:
    require_vendor()
    hub = hub_process(None)
    first, second, url = open_room(new_page, hub.base)
    assert re.search(r"roomName=[0-9a-f-]{32,36}$", url)

    # The terminal: typed in one tab, the output shows in both.
    first.locator("rh-terminal .xterm").click()
    first.keyboard.type("echo shared-$((6*7))\n")
    for page in (first, second):
        wait_terminal(page, "shared-42")

    # The button: pressed in the second tab; output and exit code in both, final line kept.
    button = second.locator("rh-button .rh-run")
    button.click()
    for page in (first, second):
        page.wait_for_function(
            "() => document.querySelector('rh-button .rh-exit').textContent === 'exit code 0'")
        assert "Hello from the room!" in page.locator("rh-button .rh-output").inner_text()
    assert button.is_enabled()

    # The editor: replace hello.py, save with Ctrl-S; both viewers follow.
    wait_code(first, "rh-text-editor", "Hello from the room!")
    first.locator("rh-text-editor .cm-content").click()
    first.keyboard.press("Control+A")
    first.keyboard.insert_text('print("edited", 6 * 7, end="")\nraise SystemExit(3)\n')
    assert first.locator("rh-text-editor .rh-chip").inner_text() == "unsaved changes"
    first.keyboard.press("Control+S")
    for page in (first, second):
        wait_code(page, "rh-text-viewer", "raise SystemExit(3)")
        wait_code(page, "rh-text-editor", "raise SystemExit(3)")
    first.wait_for_function(
        "() => document.querySelector('rh-text-editor .rh-chip').textContent === 'saved'")

    # The next run uses the saved file: its unterminated last line and exit code 3 show.
    first.locator("rh-button .rh-run").click()
    for page in (first, second):
        page.wait_for_function(
            "() => document.querySelector('rh-button .rh-exit').textContent === 'exit code 3'")
        assert page.locator("rh-button .rh-output").inner_text().strip() == "edited 42"

    # A change on disk over unsaved edits is not applied silently: the editor asks.
    second.locator("rh-text-editor .cm-content").click()
    second.keyboard.press("Control+End")
    second.keyboard.insert_text("# my unsaved line\n")
    first.locator("rh-terminal .xterm").click()
    first.keyboard.type("echo '# from disk' >> hello.py\n")
    wait_code(first, "rh-text-viewer", "# from disk")
    notice = second.locator("rh-text-editor .rh-notice", has_text="changed on disk")
    notice.wait_for()
    assert "# my unsaved line" in code_text(second, "rh-text-editor")
    assert "# from disk" not in code_text(second, "rh-text-editor")
    notice.get_by_role("button", name="Load the disk version").click()
    wait_code(second, "rh-text-editor", "# from disk")
    assert "# my unsaved line" not in code_text(second, "rh-text-editor")

    # `hidden` follows HTML semantics on the widgets.
    assert first.evaluate(
        "() => { const b = document.querySelector('rh-button'); b.hidden = true;"
        " const gone = getComputedStyle(b).display === 'none'; b.hidden = false;"
        " return gone && getComputedStyle(b).display === 'block'; }")

    shot = tmp_path / "tutorial.png"
    first.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_reconnect_flushes_queued_input_in_order(hub_process, new_page) -> None:
    require_vendor()
    hub = hub_process(None)
    first, second, _ = open_room(new_page, hub.base)
    # Drop the second tab's socket, then send input in pieces while it is down:
    # they are queued, and only make a command if sent in order once reconnected.
    queued = second.evaluate("""async () => {
        const { pageRoom } = await import('/static/connection.js');
        const room = pageRoom();
        window.seenStates = [];
        room.addEventListener('state', (e) => window.seenStates.push(e.detail.state));
        room.socket.ws.close();
        for (const piece of ['ec', 'ho or', 'dered-', '$((40', '+2))', '\\r']) {
            room.send('terminal', { stdin: btoa(piece) });
        }
        return room.socket.queued.length;
    }""")
    assert queued == 6
    second.wait_for_function("() => window.seenStates.includes('reconnecting')")
    wait_connected(second)
    for page in (first, second):
        wait_terminal(page, "ordered-42")
    assert second.evaluate("window.seenStates.at(-1)") == "open"


def test_missing_libraries_say_run_make_setup(hub_process, new_page, tmp_path: Path) -> None:
    hub = hub_process(None, env={"ROOMHUB_NODE_MODULES": str(tmp_path / "absent")})
    page = new_page()
    page.goto(f"{hub.base}/tutorial?roomName=novendor")
    page.locator("rh-terminal .rh-notice", has_text="make setup").wait_for()
    page.locator("rh-text-editor .rh-notice", has_text="make setup").wait_for()
    page.locator(".rh-banner", has_text="make setup").wait_for()
    wait_connected(page)  # the room itself still works
    assert hub.log().count("make setup") == 1
