"""Serving a site built with the interactive-widgets-mkdocs plugin: the backend configuration's
translation (roomhub.pages.interactive_widgets) and the ``[assets]`` directories."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from hubtest import write_config
from roomhub.config import ConfigError, load_config, parse_config
from roomhub.pages.interactive_widgets import executor_config, site_config


def built_site(tmp_path: Path, executors: dict) -> Path:
    """A site folder as the plugin's ``mkdocs build`` leaves it (one page, ``/demo``)."""
    site = tmp_path / "site"
    (site / "static" / "demo").mkdir(parents=True)
    (site / "static" / "demo" / "index.html").write_text("<!doctype html><p>demo page</p>")
    (site / "static" / "RoomConnection.js").write_text("class RoomConnection {}")
    backend = {"host": "*", "port": 80, "pages": {"/demo": {"type": "docker", "executors": executors}}}
    (site / "interactive-widgets-backend.json").write_text(json.dumps(backend))
    return site


PLUGIN_EXECUTORS = {
    "a1": {"type": "always", "logger_name": "DockerAlways", "image": "ubuntu", "enable_tty": True,
           "command": ["bash"], "memory_limit_bytes": 134217728, "cpu_limit": "0.5", "pids_limit": 64,
           "working_directory": "/data/work"},
    "m1": {"type": "always", "image": "interactive-widgets-monitor",
           "command": ["interactive-widgets-monitor", "/data/src/x.py", "0.2", "5.0"]},
    "o1": {"type": "once", "image": "ubuntu", "command": ["python3", "x.py"], "working_directory": "/data"},
    "p1": {"type": "prologue", "image": "ubuntu", "command": ["touch", "ready"]},
}


def test_the_plugins_configuration_becomes_pages_and_assets(tmp_path):
    site = built_site(tmp_path, PLUGIN_EXECUTORS)
    config = parse_config(site_config(site, "/docs"))
    page = config.pages["/docs/demo"]
    assert page.html == site.resolve() / "static" / "demo" / "index.html"
    assert config.assets == {"/docs": site.resolve() / "static"}
    terminal, monitor, button, prologue = (page.executors[n] for n in ("a1", "m1", "o1", "p1"))
    assert (terminal.type, terminal.tty, terminal.working_directory, terminal.image) == (
        "always", True, "work", "ubuntu")
    assert (terminal.limits.memory_bytes, terminal.limits.cpus, terminal.limits.pids) == (134217728, 0.5, 64)
    assert (monitor.type, monitor.path, monitor.debounce) == ("file", "src/x.py", 0.2)
    assert (button.type, button.command, button.working_directory) == ("once", ["python3", "x.py"], ".")
    assert (prologue.type, prologue.working_directory) == ("prologue", ".")


@pytest.mark.parametrize(("executor", "message"), [
    ({"type": "always", "command": ["interactive-widgets-monitor", "/etc/passwd"]},
     "'/etc/passwd' is outside /data"),
    ({"type": "once", "command": ["ls"], "working_directory": "/tmp"}, "'/tmp' is outside /data"),
    ({"type": "sometimes", "command": ["ls"]}, "unknown executor type 'sometimes'"),
    ({"type": "once", "command": []}, "command must be a non-empty list"),
])
def test_what_cannot_be_translated_is_named(executor, message):
    with pytest.raises(ValueError, match=f"pages./p.executors.e: {message}"):
        executor_config(executor, where="pages./p.executors.e")


async def test_assets_are_served_and_pages_inside_them_come_first(tmp_path, in_process_hub):
    site = built_site(tmp_path, {})
    cfg = write_config(tmp_path / "cfg", f"""
[assets]
"/docs" = "{site / 'static'}"
[pages."/docs/demo"]
html = "page.html"
""", html="<!doctype html><p>the configured page</p>")
    async with in_process_hub(cfg) as hub, httpx.AsyncClient(base_url=hub.base) as http:
        script = await http.get("/docs/RoomConnection.js")
        assert script.status_code == 200 and script.text == "class RoomConnection {}"
        assert "demo page" in (await http.get("/docs/demo/")).text  # the folder's index.html
        assert "the configured page" in (await http.get("/docs/demo")).text
        assert (await http.get("/docs/missing.js")).status_code == 404
        assert (await http.get("/docs/../roomhub.toml")).status_code == 404


def test_an_assets_folder_that_is_missing_or_reserved_is_a_config_error(tmp_path):
    cfg = write_config(tmp_path, '[assets]\n"/docs" = "nowhere"\n')
    with pytest.raises(ConfigError, match=r'assets\."/docs": not a directory: .*nowhere'):
        load_config(cfg)
    with pytest.raises(ConfigError, match="'/static/x' collides with a reserved prefix"):
        parse_config({"assets": {"/static/x": str(tmp_path)}})
