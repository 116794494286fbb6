"""Sans-I/O: W3Nest's query strings, semver ranges, install input shapes, fingerprints, manifests."""

from __future__ import annotations

from pathlib import Path

import pytest

from roomhub.backends import protocol as p
from roomhub.backends.packages import Catalog, PackageError, read_package


@pytest.mark.parametrize(("text", "expected"), [
    ("pyrun_backend", p.Query("pyrun_backend", "*", None)),
    ("w3nest_demo_backend#^0.1.0", p.Query("w3nest_demo_backend", "^0.1.0", None)),
    ("w3nest_demo_backend#^0.1.0 as demoClient", p.Query("w3nest_demo_backend", "^0.1.0", "demoClient")),
    ("  x#>=1.0.0 <2.0.0 as y ", p.Query("x", ">=1.0.0 <2.0.0", "y")),
])
def test_queries(text: str, expected: p.Query) -> None:
    assert p.parse_query(text) == expected


@pytest.mark.parametrize("text", ["", "#^1", "a b", "na/me", "x#^^1", "x#1 as 3d", "x as"])
def test_bad_queries_name_the_problem(text: str) -> None:
    with pytest.raises(p.BadRequest) as info:
        p.parse_query(text)
    assert info.value.error in ("bad-query", "bad-version-range")
    assert info.value.status == 400


def test_ranges_resolve_to_the_newest_match() -> None:
    versions = ["0.1.0", "0.1.5", "0.2.0", "1.0.0", "1.3.1", "2.0.0-rc.1"]
    assert p.select_version(versions, "^0.1.0") == "0.1.5"
    assert p.select_version(versions, "~1.0") == "1.0.0"
    assert p.select_version(versions, "*") == "1.3.1"
    assert p.select_version(versions, "0.2.0") == "0.2.0"
    assert p.select_version(versions, "^3") is None
    assert [p.api_key(v) for v in ("0.0.3", "0.2.3", "1.4.0")] == ["003", "02", "1"]


def test_install_shapes() -> None:
    simple = p.parse_install(["a#^1.0.0 as x", "b"])
    assert [q.name for q in simple.queries] == ["a", "b"] and simple.partition is None
    full = p.parse_install({"modules": ["pyrun_backend#^0.2.0 as py"], "partition": "Foo",
                            "configurations": {"pyrun_backend": {"buildArgs": {"python": "3.11", "n": 3}}}})
    assert full.partition == "Foo"
    assert full.configurations["pyrun_backend"].build == {"python": "3.11", "n": "3"}


@pytest.mark.parametrize(("body", "needle"), [
    ({"modules": []}, "at least one"),
    ({"modules": "a"}, "modules"),
    ({"modules": ["a"], "bogus": 1}, "bogus"),
    ({"modules": ["a", "a#^1"]}, "more than once"),
    ({"modules": ["a"], "configurations": {"a": {"dockerfile": "http://x/Dockerfile"}}}, "dockerfile"),
    (42, "list of queries"),
])
def test_malformed_install_requests(body: object, needle: str) -> None:
    with pytest.raises(p.BadRequest) as info:
        p.parse_install(body)
    assert needle in info.value.detail


def test_fingerprint_covers_options_and_dockerfile() -> None:
    base = p.fingerprint("a", "1.0.0", {"x": "1", "y": "2"})
    assert base == p.fingerprint("a", "1.0.0", {"y": "2", "x": "1"})
    assert base.startswith("a_1.0.0_") and len(base.rsplit("_", 1)[1]) == 16
    assert base != p.fingerprint("a", "1.0.0", {"x": "1", "y": "3"})
    assert base != p.fingerprint("a", "1.0.0", {"x": "1", "y": "2"}, "FROM x\n")


def test_manifest_errors_name_the_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "roomhub-backend.toml").write_text('name = "ok"\nversion = "1.x"\n[start]\ncommand = []\n')
    with pytest.raises(PackageError) as info:
        read_package(tmp_path)
    assert "roomhub-backend.toml" in str(info.value) and "version" in str(info.value)
    assert "start.command" in str(info.value)


def test_catalog_reads_archives_and_skips_bad_packages(tmp_path: Path, catalog: Path) -> None:
    import shutil

    shutil.make_archive(str(catalog / "zipped"), "gztar", catalog / "hello-1.0.0")
    shutil.rmtree(catalog / "hello-1.0.0")
    (catalog / "broken").mkdir()
    (catalog / "broken" / "roomhub-backend.toml").write_text("not toml [")
    cat = Catalog([catalog], tmp_path / "unpacked")
    assert sorted(cat.scan()["hello"]) == ["1.0.0", "1.2.0", "2.0.0"]
    assert cat.resolve("hello", "^1.0.0").version == "1.2.0"
    with pytest.raises(p.BadRequest) as info:
        cat.resolve("hello", "^3.0.0")
    assert info.value.error == "no-matching-version" and info.value.status == 404
    with pytest.raises(p.BadRequest) as info:
        cat.resolve("nope", "*")
    assert info.value.error == "unknown-backend"
