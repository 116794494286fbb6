"""The browser libraries installed from npm, and the import map that lets pages use them.

CodeMirror 6, xterm.js, Yjs and y-websocket are plain ES modules that import
each other by bare names (``import {EditorView} from "@codemirror/view"``,
``import * as encoding from "lib0/encoding"``). A browser resolves such names
only through an import map (WHATWG HTML, "import maps"). :func:`import_map`
builds one from ``node_modules`` at start-up: each package's ES module entry
(``exports`` with the ``import``/``browser``/``default`` condition, else
``module``, else ``main``) is mapped to its URL under ``/static/vendor/``,
each subpath export whose file differs from its name (``lib0/encoding`` to
``lib0/encoding.js``) to that file, and ``name/`` to the package folder for
deep imports. Packages that npm could not hoist (``a/node_modules/b``) get a
scope, so each importer finds its own version.

Pages load ``/static/importmap.js`` (a classic script, see
:func:`importmap_script`) before their first module script; it inserts the
map, or, when the libraries are missing, marks the page so widgets say
"run make setup" instead of failing silently.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("roomhub.vendor")

CONDITIONS = ("browser", "import", "module", "default")
SETUP_HINT = "the browser libraries are not installed: run `make setup` (npm ci in src/roomhub/web)"


def _pick(target: Any) -> str | None:
    """The path a conditional ``exports`` target resolves to for a browser importing ESM."""
    if isinstance(target, str):
        return target
    if isinstance(target, list):
        for item in target:
            if (found := _pick(item)) is not None:
                return found
        return None
    if isinstance(target, dict):
        for condition in CONDITIONS:
            if condition in target and (found := _pick(target[condition])) is not None:
                return found
    return None


def package_entry(package_json: dict[str, Any]) -> str | None:
    """The ES module entry of a package, relative to its folder (``"dist/index.js"``), or None."""
    exports = package_json.get("exports")
    if exports is not None:
        if isinstance(exports, dict) and any(key.startswith(".") for key in exports):
            exports = exports.get(".")
        if (found := _pick(exports)) is not None:
            return found.removeprefix("./")
    for field in ("module", "main"):
        value = package_json.get(field)
        if isinstance(value, str):
            return value.removeprefix("./")
    return None


def package_subpaths(package_json: dict[str, Any]) -> dict[str, str]:
    """The subpath exports a browser cannot find by the path alone: ``{"./array": "array.js"}``.

    Node's ``exports`` maps each subpath a package offers (``lib0/array``) to its file (Node.js
    documentation, "Packages", "Subpath exports"); the import map's ``name/`` prefix already
    resolves a subpath that is its own file, so only those whose file differs are returned, as
    paths relative to the package folder. Patterns (``./*``) are left to that prefix too.
    """
    exports = package_json.get("exports")
    if not isinstance(exports, dict):
        return {}
    found: dict[str, str] = {}
    for subpath, target in exports.items():
        if not subpath.startswith("./") or "*" in subpath:
            continue
        path = _pick(target)
        if path is not None and path.removeprefix("./") != subpath.removeprefix("./"):
            found[subpath] = path.removeprefix("./")
    return found


def _packages(node_modules: Path) -> list[Path]:
    """Package folders directly inside ``node_modules`` (scoped ones included)."""
    found: list[Path] = []
    for child in sorted(node_modules.iterdir()):
        if child.name.startswith("."):
            continue
        if child.name.startswith("@") and child.is_dir():
            found += [p for p in sorted(child.iterdir()) if (p / "package.json").is_file()]
        elif (child / "package.json").is_file():
            found.append(child)
    return found


def _imports(
    node_modules: Path, root: Path, prefix: str, scopes: dict[str, dict[str, str]]
) -> dict[str, str]:
    imports: dict[str, str] = {}
    for folder in _packages(node_modules):
        try:
            meta = json.loads((folder / "package.json").read_text())
        except (OSError, ValueError) as exc:
            log.warning("skipping %s: unreadable package.json (%s)", folder, exc)
            continue
        name = meta.get("name") or folder.relative_to(node_modules).as_posix()
        base = prefix + folder.relative_to(root).as_posix() + "/"
        entry = package_entry(meta)
        if entry is not None:
            imports[name] = base + entry
        for subpath, path in package_subpaths(meta).items():
            imports[name + subpath.removeprefix(".")] = base + path
        imports[name + "/"] = base
        nested = folder / "node_modules"
        if nested.is_dir():
            scoped = _imports(nested, root, prefix, scopes)
            if scoped:
                scopes[base] = scoped
    return imports


def import_map(node_modules: Path, prefix: str = "/static/vendor/") -> dict[str, Any]:
    """``{"imports": {...}, "scopes": {...}}`` for every package in ``node_modules``.

    ``prefix`` is the URL ``node_modules`` is served at. Raises ``FileNotFoundError``
    if ``node_modules`` is not a directory.
    """
    if not node_modules.is_dir():
        raise FileNotFoundError(node_modules)
    scopes: dict[str, dict[str, str]] = {}
    imports = _imports(node_modules, node_modules, prefix, scopes)
    result: dict[str, Any] = {"imports": imports}
    if scopes:
        result["scopes"] = scopes
    return result


def importmap_script(node_modules: Path, prefix: str = "/static/vendor/") -> str:
    """The classic script served as ``/static/importmap.js``.

    With the libraries present it inserts ``<script type="importmap">`` right
    after itself and sets ``window.roomhubVendor = {ok: true}``; without them it
    sets ``{ok: false, hint}`` (widgets show the hint) and logs a warning once.
    """
    try:
        mapping = import_map(node_modules, prefix)
    except FileNotFoundError:
        mapping = None
    if not mapping or not mapping["imports"]:
        log.warning("%s (looked in %s); pages will show this hint", SETUP_HINT, node_modules)
        return f"window.roomhubVendor = {json.dumps({'ok': False, 'hint': SETUP_HINT})};\n"
    # "</" cannot end the inline script: JSON allows escaping "/" anywhere.
    text = json.dumps(mapping, indent=1).replace("</", "<\\/")
    return (
        "window.roomhubVendor = {ok: true};\n"
        "(() => {\n"
        "  const map = document.createElement('script');\n"
        "  map.type = 'importmap';\n"
        f"  map.textContent = {json.dumps(text)};\n"
        "  (document.currentScript || document.head.lastChild).after(map);\n"
        "})();\n"
    )
