"""The interactive-widgets-mkdocs plugin's own pages, unchanged, in Chromium against roomhub.

The plugin (its repository's snapshot, ``scripts/setup-originals.sh``) is installed as its README
says by ``scripts/setup-iw-mkdocs.sh`` (pip, whose build runs ``npm ci`` for its xterm.js and
CodeMirror). ``mkdocs build`` turns a page written with the plugin's tags into HTML, scripts and the
backend's configuration; :func:`roomhub.pages.interactive_widgets.site_config` translates that
configuration; the hub serves the site under ``/docs`` and runs the page's programs.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from browser_helpers import open_tabs

from hubtest import ROOT, original
from roomhub.pages.interactive_widgets import site_config

pytestmark = pytest.mark.e2e
tomli_w = pytest.importorskip("tomli_w")

PLUGIN = "h3ndrk+interactive-widgets-mkdocs"
INSTALL = ROOT / "tests" / "originals" / ".iw-mkdocs"
# A 1x1 PNG, written by the page's button through the program typed into its editor.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
PROGRAM = (
    "import base64, pathlib\n"
    f"pathlib.Path('plot.png').write_bytes(base64.b64decode('{base64.b64encode(PNG).decode()}'))\n"
    "print('drew', len(pathlib.Path('plot.png').read_bytes()), 'bytes')\n"
)
PAGE = """\
# Compatibility

<x-prologue command="sh -c 'echo prologue-ran; echo from-the-prologue > prologue.txt'" image="roomhub-test" working-directory="/data" />

<x-terminal image="roomhub-test" command="bash --norc --noprofile -i" working-directory="/data" />

<x-button command="python3 draw.py" image="roomhub-test" label="Draw" working-directory="/data" />

<x-text-editor file="/data/draw.py" mode="python" />

<x-text-viewer file="/data/prologue.txt" />

<x-image-viewer file="/data/plot.png" mime="image/png" />

<x-epilogue command="echo epilogue-ran" image="roomhub-test" working-directory="/data" hidden />
"""  # noqa: E501  (each tag alone on its line, as the plugin needs)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site ``mkdocs build`` makes of PAGE with the original plugin."""
    original(PLUGIN)
    setup = subprocess.run(["bash", str(ROOT / "scripts" / "setup-iw-mkdocs.sh")], capture_output=True,
                           text=True, timeout=600, env={**os.environ, "PYTHON": sys.executable})
    assert setup.returncode == 0, f"setup-iw-mkdocs.sh failed:\n{setup.stdout}\n{setup.stderr}"
    project = tmp_path_factory.mktemp("mkdocs")
    (project / "docs").mkdir()
    (project / "docs" / "index.md").write_text(PAGE)
    # No highlight.js from a CDN (the tests run without network; a failed load is a console error);
    # the search plugin, as the theme's script fails on DOMContentLoaded without its dialog.
    (project / "mkdocs.yml").write_text(textwrap.dedent("""\
        site_name: roomhub compatibility
        theme:
          name: mkdocs
          highlightjs: false
        plugins:
          - search
          - interactive_widgets
    """))
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build"], cwd=project, capture_output=True,
                           text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(INSTALL)})
    assert build.returncode == 0, build.stderr
    return project / "site"


@pytest.fixture
def hub_config(site: Path, tmp_path: Path) -> Path:
    config = site_config(site, "/docs")
    config["server"] = {"shutdown_timeout": 20.0}
    path = tmp_path / "roomhub.toml"
    path.write_text(tomli_w.dumps(config))
    return path


@pytest.fixture
def tab(browser: object) -> Iterator[tuple[Callable[[], object], list[str]]]:
    """Factory of tabs in one browser context, and the page and console errors of all of them."""
    with open_tabs(browser, console_errors=True) as tabs:
        yield tabs
        if tabs[1]:  # shown with a failure, also when the test stopped before its own check
            print("JavaScript errors:", *tabs[1], sep="\n  ")


def caption(page: object, title: str) -> None:
    """Wait for the terminal's caption, which the plugin sets from the title the shell prints."""
    page.wait_for_function(  # type: ignore[attr-defined]
        "t => document.querySelector('.interactive-widgets-terminal + .interactive-widgets-caption')"
        ".innerText === 'Terminal: ' + t", arg=title)


def set_title(page: object, title: str, attempts: int = 5) -> None:
    """Type a command that sets the terminal title (retried: input sent during a restart is dropped)."""
    for attempt in range(attempts):
        page.locator(".interactive-widgets-terminal").click()  # type: ignore[attr-defined]
        page.keyboard.type(f"printf '\\033]0;%s\\007' {title}-$((6*7))\n")  # type: ignore[attr-defined]
        try:
            caption(page, f"{title}-42")
            return
        except Exception:
            if attempt == attempts - 1:
                raise


def editor_button(page: object, label: str) -> object:
    return page.locator(".interactive-widgets-text-editor button", has_text=label)  # type: ignore[attr-defined]


def wait_editor_idle(page: object) -> None:
    """The editor unlocks its buttons when the file's contents (or error) come back."""
    page.wait_for_function(  # type: ignore[attr-defined]
        "() => !document.querySelector('.interactive-widgets-text-editor button').disabled")


def editor_value(page: object) -> str:
    return page.evaluate(  # type: ignore[attr-defined]
        "document.querySelector('.interactive-widgets-text-editor .CodeMirror').CodeMirror.getValue()")


def image_data(page: object) -> bytes:
    url = page.evaluate(  # type: ignore[attr-defined]
        "document.querySelector('.interactive-widgets-image-viewer').style.backgroundImage")
    match = re.fullmatch(r'url\("data:image/png;base64,(.*)"\)', url)
    assert match, url
    return base64.b64decode(match.group(1))


def test_the_plugins_page_runs_unchanged(hub_process, hub_config: Path, tab, tmp_path: Path) -> None:
    new_tab, errors = tab
    hub = hub_process(hub_config)
    first = new_tab()
    first.goto(f"{hub.base}/docs/")
    first.wait_for_url(re.compile(r"roomName=[0-9a-f-]{36}$"))  # the plugin's redirect
    url = first.url

    # Joined: the prologue's output and file, a connected button (disabled until the socket opens).
    first.wait_for_function("() => !document.querySelector('.interactive-widgets-button button').disabled")
    first.locator(".interactive-widgets-logue .line.stdout", has_text="prologue-ran").wait_for()
    first.locator(".interactive-widgets-text-viewer .CodeMirror", has_text="from-the-prologue").wait_for()

    # The terminal: what is typed runs, its output (a title) shows; `exit` restarts the shell.
    set_title(first, "typed")
    first.locator(".interactive-widgets-terminal").click()
    first.keyboard.type("exit\n")
    set_title(first, "restarted")

    # The editor: no file yet; create it, type the program, save; save again unchanged.
    first.locator(".interactive-widgets-text-editor .error.show", has_text="No such file").wait_for()
    editor_button(first, "Create/Empty").click()
    wait_editor_idle(first)
    first.locator(".interactive-widgets-text-editor .CodeMirror").click()
    first.keyboard.insert_text(PROGRAM)
    editor_button(first, "Save").click()
    wait_editor_idle(first)
    for _ in range(2):  # an unchanged save is answered too, or the editor stays locked
        assert first.evaluate(
            "() => { const save = [...document.querySelectorAll('.interactive-widgets-text-editor button')]"
            ".find(b => b.innerText === 'Save'); save.click(); return save.disabled; }")
        wait_editor_idle(first)
    assert editor_value(first) == PROGRAM

    # A second tab joins late: the terminal's recent output, the files, the prologue's output.
    second = new_tab()
    second.goto(url)
    caption(second, "restarted-42")
    second.locator(".interactive-widgets-logue .line.stdout", has_text="prologue-ran").wait_for()
    second.wait_for_function(
        "p => document.querySelector('.interactive-widgets-text-editor .CodeMirror')"
        ".CodeMirror.getValue() === p", arg=PROGRAM)

    # The button, pressed in the second tab: the program's output in both, its PNG in both viewers.
    second.wait_for_function("() => !document.querySelector('.interactive-widgets-button button').disabled")
    second.locator(".interactive-widgets-button button").click()
    for page in (first, second):
        page.locator(".interactive-widgets-button .line.stdout", has_text=f"drew {len(PNG)} bytes").wait_for()
        page.wait_for_function("() => !document.querySelector('.interactive-widgets-button button').disabled")
        page.wait_for_function(
            "() => document.querySelector('.interactive-widgets-image-viewer').style.backgroundImage"
            ".startsWith('url(\"data:image/png')")
        assert image_data(page) == PNG
        assert page.evaluate(
            "() => new Promise(done => { const img = new Image(); img.onload = () => done(img.naturalWidth);"
            " img.onerror = () => done(-1); img.src = getComputedStyle("
            "document.querySelector('.interactive-widgets-image-viewer')).backgroundImage.slice(5, -2); })"
        ) == 1

    # A third tab, joining after the drawing, is shown the PNG and the button's last output.
    third = new_tab()
    third.goto(url)
    third.locator(".interactive-widgets-button .line.stdout", has_text=f"drew {len(PNG)} bytes").wait_for()
    third.wait_for_function(
        "() => document.querySelector('.interactive-widgets-image-viewer').style.backgroundImage !== 'none'")
    assert image_data(third) == PNG
    third.close()

    # Delete the program, then create it again (empty): both editors follow.
    editor_button(first, "Delete").click()
    wait_editor_idle(first)
    for page in (first, second):
        page.locator(".interactive-widgets-text-editor .error.show", has_text="No such file").wait_for()
    editor_button(first, "Create/Empty").click()
    for page in (first, second):
        page.locator(".interactive-widgets-text-editor .editor.show").wait_for()
        assert editor_value(page) == ""

    # The terminal still answers both tabs after all that.
    set_title(second, "second")
    caption(first, "second-42")
    assert errors == []
    room = json.loads(first.evaluate("fetch('/api/rooms').then(r => r.text())"))
    assert [r["clients"] for r in room] == [2]

    # Both tabs gone: the room is torn down and its epilogue runs (its output goes to the log).
    first.close()
    second.close()
    deadline = time.monotonic() + 30
    while "epilogue-ran" not in hub.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "epilogue-ran" in hub.log()
    assert "Traceback" not in hub.log(), hub.log()
