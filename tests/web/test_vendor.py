"""The import map built from node_modules, and /static/importmap.js served by the hub."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from roomhub.vendor import SETUP_HINT, import_map, importmap_script, package_entry, package_subpaths


def write_package(folder: Path, meta: dict[str, object]) -> None:
    folder.mkdir(parents=True)
    (folder / "package.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("meta", "entry"),
    [
        ({"exports": {"import": "./dist/index.js", "require": "./index.cjs"}}, "dist/index.js"),
        ({"exports": {".": {"import": "./e.js", "default": "./c.js"}, "./x": "./x.js"}}, "e.js"),
        ({"exports": {".": [{"browser": "./b.js"}, "./fallback.js"]}}, "b.js"),
        ({"exports": "./only.js"}, "only.js"),
        ({"module": "lib/xterm.mjs", "main": "lib/xterm.js"}, "lib/xterm.mjs"),
        ({"main": "index.js"}, "index.js"),
        ({"exports": {"require": "./c.cjs"}, "module": "m.js"}, "m.js"),
        ({"name": "types-only"}, None),
    ],
)
def test_package_entry(meta: dict[str, object], entry: str | None) -> None:
    assert package_entry(meta) == entry


def test_import_map_maps_packages_scopes_and_deep_imports(tmp_path: Path) -> None:
    nm = tmp_path / "node_modules"
    write_package(nm / "@scope" / "view", {"name": "@scope/view", "exports": {"import": "./d.js"}})
    write_package(nm / "plain", {"name": "plain", "module": "src/plain.js"})
    write_package(nm / "plain" / "node_modules" / "dep", {"name": "dep", "main": "old.js"})
    write_package(nm / "dep", {"name": "dep", "main": "new.js"})
    (nm / ".package-lock.json").write_text("{}")

    result = import_map(nm, "/v/")
    assert result["imports"] == {
        "@scope/view": "/v/@scope/view/d.js",
        "@scope/view/": "/v/@scope/view/",
        "dep": "/v/dep/new.js",
        "dep/": "/v/dep/",
        "plain": "/v/plain/src/plain.js",
        "plain/": "/v/plain/",
    }
    assert result["scopes"] == {
        "/v/plain/": {
            "dep": "/v/plain/node_modules/dep/old.js",
            "dep/": "/v/plain/node_modules/dep/",
        }
    }
    with pytest.raises(FileNotFoundError):
        import_map(tmp_path / "absent")


def test_subpath_exports_are_mapped_to_their_files(tmp_path: Path) -> None:
    """As lib0 and y-protocols offer ``lib0/encoding`` for ``encoding.js``: only subpaths whose
    file differs from their name need an entry; the rest, and patterns, the prefix resolves."""
    meta = {
        "name": "lib",
        "exports": {
            ".": {"types": "./index.d.ts", "import": "./index.js", "require": "./dist/index.cjs"},
            "./encoding": {"module": "./encoding.js", "require": "./dist/encoding.cjs"},
            "./encoding.js": "./encoding.js",
            "./logging": {"node": {"default": "./logging.node.js"}, "browser": {"default": "./logging.js"}},
            "./node-only": {"node": "./n.js", "require": "./n.cjs"},
            "./*": "./src/*",
            "./package.json": "./package.json",
        },
    }
    assert package_subpaths(meta) == {"./encoding": "encoding.js", "./logging": "logging.js"}
    assert package_subpaths({"exports": "./only.js"}) == {}
    write_package(tmp_path / "lib", meta)
    assert import_map(tmp_path, "/v/")["imports"] == {
        "lib": "/v/lib/index.js",
        "lib/encoding": "/v/lib/encoding.js",
        "lib/logging": "/v/lib/logging.js",
        "lib/": "/v/lib/",
    }


def test_importmap_script_without_libraries_gives_the_hint(tmp_path: Path, caplog) -> None:
    script = importmap_script(tmp_path / "absent")
    assert "importmap" not in script
    assert json.dumps(SETUP_HINT) in script
    assert "make setup" in caplog.text


def test_importmap_script_cannot_end_its_script_tag(tmp_path: Path) -> None:
    write_package(tmp_path / "evil", {"name": "evil", "main": "</script><b>.js"})
    script = importmap_script(tmp_path)
    assert "</script>" not in script
    text = json.loads(script.split("map.textContent = ", 1)[1].split(";\n", 1)[0])
    assert json.loads(text)["imports"]["evil"] == "/static/vendor/evil/</script><b>.js"


def test_hub_serves_the_import_map_and_the_libraries(hub_process) -> None:
    from roomhub.app import node_modules_dir

    if not (node_modules_dir() / "@codemirror" / "view").is_dir():
        pytest.fail("browser libraries missing: run scripts/setup-web.sh")
    hub = hub_process(None)
    script = httpx.get(f"{hub.base}/static/importmap.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    text = json.loads(script.text.split("map.textContent = ", 1)[1].split(";\n", 1)[0])
    imports = json.loads(text)["imports"]
    for name in ("@xterm/xterm", "@xterm/addon-fit", "codemirror", "@codemirror/lang-python",
                 "yjs", "y-websocket", "y-protocols/sync", "lib0/encoding", "isomorphic.js"):
        module = httpx.get(hub.base + imports[name])
        assert module.status_code == 200, name
        assert "javascript" in module.headers["content-type"], name
    assert httpx.get(f"{hub.base}/static/roomhub.js").status_code == 200
    assert httpx.get(f"{hub.base}/static/roomhub.css").status_code == 200
