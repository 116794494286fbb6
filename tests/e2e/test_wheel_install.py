"""roomhub's built wheel, installed as a user would (a fresh virtual environment, no Node on
PATH, no source tree), serves pages whose browser libraries work: the tutorial's terminal and
editor, and the collaborative editor, in Chromium."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from browser_helpers import wait_code, wait_connected, wait_terminal

from hubtest import ROOT, HubProcess, free_port, wait_serving

pytestmark = [pytest.mark.e2e, pytest.mark.wheel]

NODE_TOOLS = {"node", "nodejs", "npm", "npx", "corepack"}


def run(args: list[str], **kwargs: object) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{args} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def path_without_node(directory: Path) -> str:
    """A folder of links to every program on this machine's PATH but Node's (so bash, python3 and
    what the demo's programs run stay there)."""
    directory.mkdir()
    for folder in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep):
        if not folder or not Path(folder).is_dir() or ".venv" in folder:
            continue
        for program in Path(folder).iterdir():
            link = directory / program.name
            if program.name not in NODE_TOOLS and not link.exists() and os.access(program, os.X_OK):
                link.symlink_to(program)
    return str(directory)


@pytest.fixture(scope="module")
def wheel_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """``roomhub serve`` (the embedded demo) from the wheel, installed into a fresh venv."""
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(dist), str(ROOT)])
    (wheel,) = dist.glob("roomhub-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("roomhub/web/node_modules/@xterm/xterm/lib/xterm.mjs",
                   "roomhub/web/node_modules/@xterm/xterm/LICENSE",
                   "roomhub/web/node_modules/yjs/package.json",
                   "roomhub/web/admin/admin.js", "roomhub/demo/roomhub.toml"):
        assert needed in names, needed
    print(f"\nwheel {wheel.name}: {wheel.stat().st_size} bytes, {len(names)} files")
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    run([str(python), "-m", "pip", "install", "--quiet", str(wheel)], cwd=tmp)
    if sys.version_info < (3, 12):  # the README's step for Python 3.11 (see the widgets face)
        run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--ignore-requires-python",
             "pgwidgets-js==0.4.2"], cwd=tmp)
    env = {"PATH": f"{venv / 'bin'}{os.pathsep}{path_without_node(tmp / 'bin')}",
           "HOME": os.environ.get("HOME", str(tmp)), "LANG": "C.UTF-8"}
    assert run(["sh", "-c", "command -v node || echo none"], env=env).strip() == "none"
    where = run([str(python), "-c", "import roomhub; print(roomhub.__file__)"], cwd=tmp, env=env)
    assert where.startswith(str(venv)), where  # the installed package, not the source tree
    port = free_port()
    log_path = tmp / "hub.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(venv / "bin" / "roomhub"), "serve", "--port", str(port),
                                 "--data-dir", str(tmp / "data")],
                                cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
    hub = HubProcess(proc, port, log_path)
    try:
        wait_serving(proc, f"{hub.base}/api/health", hub.log, 30)
        yield hub
    finally:
        hub.stop()


def test_installed_wheel_serves_the_browser_libraries(wheel_hub: HubProcess) -> None:
    importmap = httpx.get(f"{wheel_hub.base}/static/importmap.js").text
    assert "/static/vendor/@xterm/xterm/" in importmap and "make setup" not in wheel_hub.log()
    for path in ("@xterm/xterm/lib/xterm.mjs", "yjs/package.json", "y-websocket/package.json"):
        assert httpx.get(f"{wheel_hub.base}/static/vendor/{path}").status_code == 200, path


def test_installed_wheel_drives_terminal_and_collaborative_editor(
        wheel_hub: HubProcess, new_page: Callable[[], object]) -> None:
    tutorial = new_page()
    tutorial.goto(f"{wheel_hub.base}/tutorial?roomName=from-wheel")  # type: ignore[attr-defined]
    wait_connected(tutorial)
    wait_terminal(tutorial, "room$")
    tutorial.locator("rh-terminal .xterm").click()  # type: ignore[attr-defined]
    tutorial.keyboard.type("echo wheel-$((6*7))\n")  # type: ignore[attr-defined]
    wait_terminal(tutorial, "wheel-42")
    wait_code(tutorial, "rh-text-editor", "Hello from the room!")  # CodeMirror loaded

    first, second = new_page(), new_page()
    for page in (first, second):
        page.goto(f"{wheel_hub.base}/editor?roomName=wheel-doc")  # type: ignore[attr-defined]
        page.wait_for_selector("#editor:not([disabled])")  # type: ignore[attr-defined]
    first.locator("#editor").click()  # type: ignore[attr-defined]
    first.keyboard.type("typed in the wheel's editor")  # type: ignore[attr-defined]
    second.wait_for_function(  # type: ignore[attr-defined]
        "() => document.getElementById('editor').value === \"typed in the wheel's editor\"")
