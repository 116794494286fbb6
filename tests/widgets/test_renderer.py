"""The renderer is pgwidgets-js from its pip package: the page, its files, and a hub
without it, which refuses to start saying how to install it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
from widgets_helpers import serve_app, widgets_config

from hubtest import SRC, free_port
from roomhub.widgets import App


async def test_page_loads_pgwidgets_js_from_the_hub(tmp_path: Path) -> None:
    async with serve_app(App(), tmp_path) as h, httpx.AsyncClient(base_url=h.base) as client:
        page = await client.get("/widgets/")
        assert page.status_code == 200
        assert 'from "/widgets/pgwidgets/Widgets.js"' in page.text and "/widgets/ws" in page.text
        script = await client.get("/widgets/pgwidgets/Widgets.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        remote = await client.get("/widgets/pgwidgets/modules/RemoteInterface.js")
        assert remote.status_code == 200 and "next_wid" in remote.text
        assert (await client.get("/widgets/pgwidgets/Widgets.css")).status_code == 200


def test_hub_without_pgwidgets_js_says_how_to_install_it(tmp_path: Path) -> None:
    config = widgets_config(tmp_path / "cfg")
    # The same interpreter, with the package made unimportable.
    hide = (
        "import sys; sys.modules['pgwidgets_js'] = None; sys.modules['pgwidgets_js.defs'] = None; "
        "from roomhub.cli import main; main()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", hide, "serve", str(config), "--port", str(free_port()),
         "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(SRC)},
    )
    assert proc.returncode == 2, proc.stderr
    out = proc.stdout + proc.stderr
    assert "pgwidgets-js" in out and "--ignore-requires-python pgwidgets-js==0.4.2" in out
