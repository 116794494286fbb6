"""interactive-widgets-backend's configuration read into roomhub's, to serve a site built with the
interactive-widgets-mkdocs plugin.

``mkdocs build`` with the plugin writes the site's HTML, scripts and styles to
``site/static/`` and the backend's configuration to
``site/interactive-widgets-backend.json``: ``{"pages": {PATH: {"executors":
{NAME: {"type", "command", "image", "working_directory", "enable_tty",
"memory_limit_bytes", "cpu_limit", "pids_limit", ...}}}}}`` (see the reference
``pages-interactive-widgets.md``). :func:`site_config` turns that into a
roomhub configuration (the ``[pages]`` and ``[assets]`` tables) serving the
site under a URL prefix; the plugin's pages then run unchanged against the
hub (they do not ask for roomhub's additions, so they get the original
frames).

What changes on the way: the room volume mounted at ``/data`` becomes the
room directory, so working directories and files must lie in ``/data``
(commands run as written; with the ``docker`` or ``bubblewrap`` runtime set
``room_mount = "/data"`` so that absolute paths in them still hold); the
monitor program's ``always`` executors become ``file`` executors (the hub
watches the file itself; the success timeout becomes the debounce);
``cpu_limit`` becomes ``limits.cpus`` (Docker's CPU quota); options roomhub
has no use for (logger names, ``handle_message_timeout``, the failure
timeout) are dropped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

BACKEND_CONFIGURATION = "interactive-widgets-backend.json"
MONITOR_COMMAND = "interactive-widgets-monitor"
VOLUME_MOUNT = "/data"


def _in_room(path: str, mount: str, where: str) -> str:
    """``path`` (absolute, in the room volume at ``mount``) relative to the room directory."""
    posix = PurePosixPath(path)
    if not posix.is_absolute():
        return str(posix)
    try:
        return str(posix.relative_to(mount))
    except ValueError:
        raise ValueError(f"{where}: {path!r} is outside {mount}, where the room's directory is") from None


def _limits(executor: Mapping[str, Any]) -> dict[str, Any]:
    # The plugin copies a tag's attributes as strings (cpu-limit="0.5"): numbers are read here.
    limits: dict[str, Any] = {}
    if "memory_limit_bytes" in executor:
        limits["memory_bytes"] = int(executor["memory_limit_bytes"])
    if "pids_limit" in executor:
        limits["pids"] = int(executor["pids_limit"])
    if "cpu_limit" in executor:
        limits["cpus"] = float(executor["cpu_limit"])
    return limits


def executor_config(executor: Mapping[str, Any], *, mount: str = VOLUME_MOUNT,
                    monitor_command: str = MONITOR_COMMAND, where: str = "executor") -> dict[str, Any]:
    """One interactive-widgets executor (a mapping of the backend's JSON) as a roomhub executor
    table (``[pages."P".executors.NAME]``). ``where`` names it in errors.

    Raises ``ValueError`` (naming ``where``) for an unknown type, a missing command or a path
    outside ``mount``."""
    kind = executor.get("type")
    command = executor.get("command")
    if kind not in ("always", "once", "prologue", "epilogue"):
        raise ValueError(f"{where}: unknown executor type {kind!r}")
    if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
        raise ValueError(f"{where}: command must be a non-empty list of strings")
    if kind == "always" and PurePosixPath(command[0]).name == monitor_command:
        if len(command) < 2:
            raise ValueError(f"{where}: the monitor needs a file argument")
        out: dict[str, Any] = {"type": "file", "path": _in_room(command[1], mount, where)}
        if len(command) > 2:
            out["debounce"] = float(command[2])  # the monitor's success timeout, seconds
        return out
    out = {"type": kind, "command": list(command), "limits": _limits(executor)}
    if "working_directory" in executor:
        out["working_directory"] = _in_room(executor["working_directory"], mount, where)
    if executor.get("image"):
        out["image"] = executor["image"]
    if kind == "always":
        out["tty"] = bool(executor.get("enable_tty", False))
    return out


def site_config(site: Path, prefix: str, *, mount: str = VOLUME_MOUNT,
                monitor_command: str = MONITOR_COMMAND) -> dict[str, Any]:
    """The roomhub configuration tables serving the site that ``mkdocs build`` wrote to ``site``
    (the folder holding ``static/`` and ``interactive-widgets-backend.json``) under the URL
    ``prefix`` (``"/docs"``: the site's page ``/demo/`` is ``/docs/demo/``).

    Returns ``{"pages": {...}, "assets": {prefix: site/static}}``, ready for
    :func:`roomhub.config.parse_config` or a TOML file (paths absolute). Each page keeps the
    plugin's executor names, which its HTML addresses. Raises ``OSError`` or ``ValueError`` (for
    bad JSON) when the configuration cannot be read, and ``ValueError`` naming the page and
    executor that cannot be translated (see :func:`executor_config`)."""
    static = (site / "static").resolve()
    backend = json.loads((site / BACKEND_CONFIGURATION).read_text(encoding="utf-8"))
    pages: dict[str, Any] = {}
    for path, page in backend.get("pages", {}).items():
        # mkdocs' page URLs: "/" and "/demo" for folders (index.html), "/demo.html" for files.
        relative = path.strip("/")
        html = static / relative if relative.endswith(".html") else static / relative / "index.html"
        executors = {
            name: executor_config(executor, mount=mount, monitor_command=monitor_command,
                                  where=f"pages.{path}.executors.{name}")
            for name, executor in page.get("executors", {}).items()
        }
        pages[f"{prefix}/{relative}".rstrip("/")] = {"html": str(html), "executors": executors}
    return {"pages": pages, "assets": {prefix: str(static)}}
