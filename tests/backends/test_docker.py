"""Docker backends on a real engine: an image built locally (nothing pulled), a container with no
network that listens on a Unix socket in a bind-mounted directory, reached through the proxy."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest
from conftest import hub_config, partition_socket
from docker_image import engine_problem, ensure_python_image


@pytest.fixture(scope="module")
def python_image() -> str:
    problem = engine_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs a Docker engine: {problem}")
        pytest.skip(problem)
    return ensure_python_image()


async def test_install_into_a_docker_image(tmp_path: Path, catalog: Path, in_process_hub,
                                           python_image: str) -> None:
    async with in_process_hub(hub_config(tmp_path, catalog)) as h, \
            httpx.AsyncClient(base_url=h.base, timeout=120) as http, \
            partition_socket(h.ws, "D", owner="tab-d") as sock:
        r = await http.post("/api/backends/install", headers={"x-backends-owner": "tab-d"}, json={
            "modules": ["dockhello#^0.3.0 as d"], "partition": "D",
            "configurations": {"dockhello": {"build": {"greeting": "ahoy"}}}})
        assert r.status_code == 200, r.text
        backend = r.json()["backends"][0]
        lines = [e["text"] for e in sock.of_type("BackendLog") if e["stage"] == "install"]
        assert any("ARG greeting" in line or "Step" in line for line in lines), lines
        answer = (await http.get("/backends/dockhello/0.3.0/hi", headers={"x-backends-partition": "D"})).json()
        assert answer["greeting"] == "ahoy" and answer["partition"] == "D" and answer["path"] == "/hi"
        inst = (await http.get(f"/api/backends/instances/{backend['uid']}")).json()
        assert inst["kind"] == "docker" and inst["listen"] == "unix socket"
        containers = subprocess.run(
            ["docker", "ps", "-q", "--filter", f"label=roomhub.uid={backend['uid']}"],
            capture_output=True, text=True, check=True).stdout.split()
        assert len(containers) == 1
        network = subprocess.run(["docker", "inspect", "-f", "{{.HostConfig.NetworkMode}}", containers[0]],
                                 capture_output=True, text=True, check=True).stdout.strip()
        assert network == "none"
        # a Dockerfile given by the client changes the fingerprint and is built too
        dockerfile = "FROM roomhub-test-python:latest\nENV GREETING=custom\nCOPY server.py /app/server.py\n"
        r2 = await http.post("/api/backends/install", json={
            "modules": ["dockhello"], "partition": "D",
            "configurations": {"dockhello": {"dockerfile": dockerfile}}})
        assert r2.status_code == 200, r2.text
        assert r2.json()["backends"][0]["fingerprint"] != backend["fingerprint"]
        answer = (await http.get("/backends/dockhello/*/", headers={"x-backends-partition": "D"})).json()
        assert answer["greeting"] == "custom"
        # the replaced container is gone
        gone = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=roomhub.uid={backend['uid']}"],
                              capture_output=True, text=True, check=True).stdout.split()
        assert gone == []
        uid2 = r2.json()["backends"][0]["uid"]
        assert (await http.delete("/api/backends/partitions/D")).json()["uids"] == [uid2]
        left = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=roomhub.uid={uid2}"],
                              capture_output=True, text=True, check=True).stdout.split()
        assert left == []


async def test_a_failing_docker_build_is_reported(tmp_path: Path, catalog: Path, in_process_hub,
                                                  python_image: str) -> None:
    async with in_process_hub(hub_config(tmp_path, catalog)) as h, \
            httpx.AsyncClient(base_url=h.base, timeout=120) as http:
        r = await http.post("/api/backends/install", json={
            "modules": ["dockhello"],
            "configurations": {"dockhello": {"dockerfile": "FROM roomhub-no-such-image:1\nCMD x\n"}}})
        assert r.status_code == 500 and r.json()["error"] == "build-failed"
        assert "roomhub-no-such-image" in r.json()["detail"] + " ".join(r.json()["log"])
        assert (await http.get("/api/backends/instances")).json() == []
