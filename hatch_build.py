"""Hatchling build hook: the wheel and the sdist carry the browser libraries the pages import.

``src/roomhub/web/package.json`` (with its ``package-lock.json``) names the npm packages of the
web client (xterm.js, CodeMirror, Yjs, y-websocket and what they import). At build time this hook
runs ``npm ci`` there unless ``node_modules`` already holds exactly the locked versions (a
checkout after ``make setup``, or an unpacked sdist, which carries them), then adds to the build
the files a browser loads from each package (``.js``, ``.mjs``, ``.css``), the ``package.json``
files the import map is made from (:mod:`roomhub.vendor`), and each package's licence. They are
not in git (``.gitignore``). A build without them fails, saying why, rather than shipping pages
that cannot work.

An editable install (``pip install -e .``) adds nothing: it serves ``src/roomhub/web`` in place,
where ``make setup`` (``scripts/setup-web.sh``) installs the libraries.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

WEB = Path("src") / "roomhub" / "web"
SHIPPED_SUFFIXES = (".js", ".mjs", ".css")
LICENCE_PREFIXES = ("license", "licence", "copying", "notice")


def locked_packages(web: Path) -> dict[str, str]:
    """``{"node_modules/<name>": version}`` of every package ``package-lock.json`` (v2/v3) locks."""
    lock = json.loads((web / "package-lock.json").read_text())
    return {path: info["version"] for path, info in lock.get("packages", {}).items()
            if path.startswith("node_modules/") and "version" in info}


def installed(web: Path) -> bool:
    """True if every locked package is in ``node_modules`` with its locked version."""
    for path, version in locked_packages(web).items():
        manifest = web / path / "package.json"
        try:
            if json.loads(manifest.read_text()).get("version") != version:
                return False
        except (OSError, ValueError):
            return False
    return True


def shipped_files(web: Path) -> list[Path]:
    """The files of ``node_modules`` a browser or the import map needs, and the licences."""
    found = []
    for path in sorted((web / "node_modules").rglob("*")):
        if not path.is_file():
            continue
        name = path.name.lower()
        if (name.endswith(SHIPPED_SUFFIXES) or name in ("package.json", ".package-lock.json")
                or name.startswith(LICENCE_PREFIXES)):
            found.append(path)
    return found


class BrowserLibrariesHook(BuildHookInterface):  # type: ignore[type-arg]
    """See the module."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name == "wheel" and version == "editable":
            return
        web = Path(self.root) / WEB
        if not installed(web):
            npm = shutil.which("npm")
            if npm is None:
                raise RuntimeError(
                    f"building roomhub needs its browser libraries in {web / 'node_modules'}: install "
                    "Node.js and npm (apt-get install nodejs npm) so that the build can run `npm ci`")
            self.app.display_info(f"npm ci in {web}")
            subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=web, check=True)
            if not installed(web):
                raise RuntimeError(f"npm ci left {web / 'node_modules'} unlike package-lock.json")
        root = Path(self.root)
        files = shipped_files(web)
        for path in files:
            relative = path.relative_to(root)
            # The wheel holds the package (roomhub/...), the sdist the source tree (src/roomhub/...).
            target = relative.relative_to("src") if self.target_name == "wheel" else relative
            build_data["force_include"][str(path)] = str(target)
        self.app.display_info(f"browser libraries: {len(files)} files from {web / 'node_modules'}")
