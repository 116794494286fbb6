"""Docker backends on a real engine: an image built locally (nothing pulled), a container with no
network that listens on a Unix socket in a bind-mounted directory, reached through the proxy."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from backends_helpers import hub_config, partition_socket
from docker_image import engine_problem, ensure_python_image

PARTITION_D = {"x-backends-partition": "D"}


async def docker_lines(argv: list[str]) -> list[str]:
    """The output lines of a docker CLI command (run off the event loop)."""
    result = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, check=True)
    return result.stdout.split()


@pytest.fixture(scope="module")
def python_image() -> Iterator[str]:
    problem = engine_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs a Docker engine: {problem}")
        pytest.skip(problem)
    yield ensure_python_image()
    images = subprocess.run(["docker", "images", "-q", "--filter", "label=roomhub.backend=dockhello"],
                            capture_output=True, text=True).stdout.split()
    if images:
        subprocess.run(["docker", "rmi", "-f", *images], capture_output=True)


async def test_install_into_a_docker_image(tmp_path: Path, catalog: Path, in_process_hub,
                                           python_image: str) -> None:
    greeting = f"ahoy-{uuid.uuid4().hex[:8]}"  # a new fingerprint: this run builds its own image
    async with in_process_hub(hub_config(tmp_path, catalog)) as h, \
            httpx.AsyncClient(base_url=h.base, timeout=120) as http, \
            partition_socket(h.ws, "D", owner="tab-d") as sock:
        r = await http.post("/api/backends/install", headers={"x-backends-owner": "tab-d"}, json={
            "modules": ["dockhello#^0.3.0 as d"], "partition": "D",
            "configurations": {"dockhello": {"build": {"greeting": greeting}}}})
        assert r.status_code == 200, r.text
        backend = r.json()["backends"][0]
        lines = [e["text"] for e in sock.of_type("BackendLog") if e["stage"] == "install"]
        assert any("ARG greeting" in line or "Step" in line for line in lines), lines
        answer = (await http.get("/backends/dockhello/0.3.0/hi", headers=PARTITION_D)).json()
        assert answer["greeting"] == greeting and answer["partition"] == "D" and answer["path"] == "/hi"
        inst = (await http.get(f"/api/backends/instances/{backend['uid']}")).json()
        assert inst["kind"] == "docker" and inst["listen"] == "unix socket"
        label = f"label=roomhub.uid={backend['uid']}"
        containers = await docker_lines(["docker", "ps", "-q", "--filter", label])
        assert len(containers) == 1
        inspect = ["docker", "inspect", "-f", "{{.HostConfig.NetworkMode}}", containers[0]]
        network = (await docker_lines(inspect))[0]
        assert network == "none"
        # a Dockerfile given by the client changes the fingerprint and is built too
        dockerfile = (f"FROM roomhub-test-python:latest\nENV GREETING=custom-{greeting}\n"
                      "COPY server.py /app/server.py\n")
        r2 = await http.post("/api/backends/install", json={
            "modules": ["dockhello"], "partition": "D",
            "configurations": {"dockhello": {"dockerfile": dockerfile}}})
        assert r2.status_code == 200, r2.text
        assert r2.json()["backends"][0]["fingerprint"] != backend["fingerprint"]
        answer = (await http.get("/backends/dockhello/*/", headers=PARTITION_D)).json()
        assert answer["greeting"] == f"custom-{greeting}"
        # the replaced container is gone
        gone = await docker_lines(["docker", "ps", "-aq", "--filter", f"label=roomhub.uid={backend['uid']}"])
        assert gone == []
        uid2 = r2.json()["backends"][0]["uid"]
        assert (await http.delete("/api/backends/partitions/D")).json()["uids"] == [uid2]
        left = await docker_lines(["docker", "ps", "-aq", "--filter", f"label=roomhub.uid={uid2}"])
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
