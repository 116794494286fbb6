"""Igor's own clients against the hub's /actions: its integration test module, unchanged but for
its addresses, with the websocket-client version its requirements pin."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hubtest import original, write_config

HERE = Path(__file__).resolve().parent


def pinned(requirements: Path, name: str) -> str:
    """The version ``requirements`` (Igor's is UTF-16) pins for ``name``."""
    raw = requirements.read_bytes()
    text = raw.decode("utf-16") if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else raw.decode()
    for line in text.splitlines():
        package, _, version = line.strip().partition("==")
        if package.lower() == name:
            return version
    raise AssertionError(f"{requirements} pins no {name}")


def test_igor_integration_tests_pass(tmp_path, hub_process):
    igor = original("cezary986+igor")
    tests = igor / "igor" / "test"
    websocket = pytest.importorskip("websocket", reason="websocket-client (the test extra) is missing")
    version = pinned(igor / "igor" / "requirements.txt", "websocket-client")
    assert websocket.__version__ == version, f"Igor's tests need websocket-client=={version}"
    config = write_config(
        tmp_path / "cfg",
        f"""
        [actions]
        api = "igor_api:API"
        pythonpath = ["{HERE}"]

        [actions.files]   # Igor's test serves its own folder
        enabled = true
        root = "{tests}"
        read_only = true
        """,
    )
    hub = hub_process(config)
    module = tests / "test_integration.py"
    report = tmp_path / "igor-tests.xml"
    env = {
        **os.environ,
        "PYTHONPATH": str(HERE),
        "ROOMHUB_IGOR_MODULE": str(module),
        "ROOMHUB_IGOR_WS": f"{hub.ws}/actions",
        "ROOMHUB_IGOR_FILES": f"{hub.base}/actions/files",
    }
    args = [
        sys.executable, "-m", "pytest", "-p", "igor_addresses", "--assert=plain", "-p", "no:cacheprovider",
        "-p", "no:asyncio",
        "-c", os.devnull, "--rootdir", str(igor), "--confcutdir", str(igor), "--timeout", "60",
        "-v", f"--junitxml={report}", str(module),
    ]
    run = subprocess.run(args, cwd=tests, env=env, capture_output=True, text=True, timeout=300)
    output = run.stdout + run.stderr
    suite = ET.parse(report).getroot().find("testsuite")
    counts = {key: int(suite.get(key)) for key in ("tests", "failures", "errors", "skipped")}
    assert counts == {"tests": 5, "failures": 0, "errors": 0, "skipped": 0}, output
    assert run.returncode == 0, output
