"""pgwidgets-python's own example programs, from its sdist, run on roomhub with only their
import changed (``pgwidgets.sync`` -> ``roomhub.widgets.sync``, ``pgwidgets.async_`` ->
``roomhub.widgets``), rendered by pgwidgets-js in a real Chromium: each starts, renders
with no error (in the page, its console, or the program's log) and its first button works.

The sdist is unpacked by ``scripts/setup-pgwidgets.sh --tests``; each example is copied
into the test's directory and its import line rewritten there, at run time.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hubtest import ROOT, SRC, free_port, wait_serving

pytestmark = pytest.mark.e2e

SDIST = ROOT / "tests" / "originals" / "pgwidgets-python"
TIMEOUT_MS = 20_000
IMPORTS = [
    (re.compile(r"^from pgwidgets\.sync import ", re.M), "from roomhub.widgets.sync import "),
    (re.compile(r"^from pgwidgets\.async_ import ", re.M), "from roomhub.widgets import "),
]


def example(name: str) -> str:
    """The example's source, from the unpacked sdist; skips (fails in CI) when it is missing."""
    path = SDIST / "examples" / name
    if not path.is_file():
        message = f"{path} missing: run scripts/setup-pgwidgets.sh --tests"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path.read_text()


def ported(source: str) -> str:
    """``source`` with its pgwidgets import replaced by roomhub's, and nothing else changed."""
    count = 0
    for pattern, replacement in IMPORTS:
        source, n = pattern.subn(replacement, source)
        count += n
    assert count == 1, "one pgwidgets import line expected"
    return source


class Program:
    """An example running as its own process (``python example.py``), on a port of its own."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.proc, self.port, self.log_path = proc, port, log_path
        self.url = f"http://127.0.0.1:{port}/widgets/"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def run_example(tmp_path: Path) -> Iterator[Callable[[str], Program]]:
    started: list[Program] = []

    def start(name: str) -> Program:
        script = tmp_path / name
        script.write_text(ported(example(name)))
        port = free_port()
        log_path = tmp_path / f"{name}.log"
        env = {**os.environ, "PYTHONPATH": str(SRC), "ROOMHUB_WIDGETS_PORT": str(port),
               "XDG_DATA_HOME": str(tmp_path / "data")}  # the hub's data stay in the test's directory
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, str(script)], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        program = Program(proc, port, log_path)
        started.append(program)
        wait_serving(proc, program.url, program.log, 30)
        return program

    yield start
    for program in started:
        program.proc.terminate()
        try:
            program.proc.wait(30)
        except subprocess.TimeoutExpired:
            program.proc.kill()
            program.proc.wait()


@pytest.fixture
def open_page(browser: object) -> Iterator[Callable[[Program], object]]:
    """A Chromium tab on a program's page; at the end, no error may have been reported by the
    page, its console, or the program's log."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})  # type: ignore[attr-defined]
    errors: list[str] = []
    programs: list[Program] = []

    def open_(program: Program) -> object:
        programs.append(program)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
        page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.goto(program.url)
        return page

    yield open_
    context.close()
    for program in programs:
        log = program.log()
        errors += [line for line in log.splitlines() if re.search(r"Traceback|ERROR|browser error", line)]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("name", ["demo_sync.py", "demo_async.py"])
def test_demo(name: str, run_example, open_page) -> None:
    page = open_page(run_example(name))
    page.get_by_text("Click a button!").wait_for()
    page.get_by_role("button", name="Hello").click()
    page.get_by_text("Hello!", exact=True).wait_for()
    page.get_by_role("button", name="World").click()
    page.get_by_text("World!", exact=True).wait_for()


def test_demo_treeview(run_example, open_page) -> None:
    page = open_page(run_example("demo_treeview.py"))
    page.get_by_text("Select an item.").wait_for()
    leaf = page.get_by_text("beach.jpg", exact=True)
    leaf.wait_for()
    page.get_by_role("button", name="Collapse All").click()
    leaf.wait_for(state="hidden")
    page.get_by_role("button", name="Expand All").click()
    leaf.wait_for()


@pytest.mark.parametrize("name", ["all_widgets.py", "all_widgets_async.py"])
def test_all_widgets_go_and_the_browser_made_menu(name: str, run_example, open_page) -> None:
    page = open_page(run_example(name))
    windows = page.locator(".mdi-window")
    windows.first.wait_for()
    assert windows.count() == 1, "the picker"
    page.get_by_role("button", name="Go!").click()
    page.get_by_role("button", name="Button A").wait_for()
    page.get_by_role("button", name="Button A").click()
    page.get_by_text("Button A clicked").wait_for()
    assert windows.count() == 2

    # Windows > Tile: a MenuAction from Menu.add_name, whose click reaches Python's handler
    # (mdi.tile_windows()), which lays the two windows side by side.
    picker = windows.first
    assert picker.evaluate("w => w.style.width") == "220px"
    page.locator(".menubar-item", has_text="Windows").click()
    page.locator(".menuaction-widget", has_text="Tile").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.mdi-window')].every(w => w.style.width !== '220px'"
        " && w.style.width === document.querySelector('.mdi-window').style.width)"
    )
    first, second = (windows.nth(i).bounding_box() for i in range(2))
    assert first["x"] + first["width"] <= second["x"] + 2, "side by side (borders may touch)"

    # A reload replays the session (pgwidgets' "press F5"): the menu item keeps its id, so
    # Windows > Cascade still reaches Python, which stacks the windows from the corner.
    page.reload()
    page.get_by_role("button", name="Button A").wait_for()
    assert windows.count() == 2
    before = windows.nth(1).evaluate("w => w.style.left")
    page.locator(".menubar-item", has_text="Windows").click()
    page.locator(".menuaction-widget", has_text="Cascade").click()
    page.wait_for_function(
        "before => { const w = document.querySelectorAll('.mdi-window');"
        " return w.length === 2 && w[0].style.left === '0px' && w[1].style.left !== before; }",
        arg=before,
    )
