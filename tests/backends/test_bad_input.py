"""Bad input: a clear status and a JSON body naming the problem, an event on the socket, and
nothing half-started."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from backends_helpers import hub_config, partition_socket

from hubtest import raw_exchange


@pytest.mark.parametrize(("body", "status", "error"), [
    (["nope"], 404, "unknown-backend"),
    (["hello#^9.0.0"], 404, "no-matching-version"),
    (["hello#^^1"], 400, "bad-version-range"),
    ({"modules": ["hello"], "configurations": {"hello": {"build": {"colour": "red"}}}}, 422,
     "unknown-build-option"),
    ({"modules": ["hello"], "extra": True}, 400, "bad-install-request"),
    (["badbuild"], 500, "build-failed"),
    (["sleeper"], 504, "start-timeout"),
    (["crasher"], 502, "start-crashed"),
    (["dep_a", "crasher"], 502, "start-crashed"),
])
async def test_failed_installs(tmp_path: Path, catalog: Path, in_process_hub, body: object, status: int,
                               error: str) -> None:
    async with in_process_hub(hub_config(tmp_path, catalog)) as h, \
            httpx.AsyncClient(base_url=h.base, timeout=60) as http, \
            partition_socket(h.ws, "bad", owner="tab") as sock:
        r = await http.post("/api/backends/install", json=body,
                            headers={"x-backends-partition": "bad", "x-install-id": "i-bad"})
        assert r.status_code == status, r.text
        assert r.json()["error"] == error and r.json()["detail"]
        failed = await sock.wait_for(lambda e: e["type"] == "InstallFailed")
        assert failed["error"] == error and failed["installId"] == "i-bad"
        # nothing left running: not the failing backend, nor what the install started before it
        assert [i for i in (await http.get("/api/backends/instances")).json() if i["status"] != "stopped"
                and i["status"] != "failed"] == []
        if error == "start-crashed":
            assert "boom" in " ".join(r.json()["log"]) and r.json()["exitCode"] == 3
        if error == "build-failed":
            assert any("no-such-directory" in line for line in r.json()["log"])


async def test_requests_for_what_does_not_exist(tmp_path: Path, catalog: Path, in_process_hub,
                                                caplog) -> None:
    async with in_process_hub(hub_config(tmp_path, catalog)) as h, \
            httpx.AsyncClient(base_url=h.base, timeout=30) as http:
        r = await http.get("/api/backends/partitions/ghost")
        assert r.status_code == 404 and r.json()["error"] == "unknown-partition"
        assert (await http.delete("/api/backends/partitions/ghost")).status_code == 404
        assert (await http.get("/api/backends/instances/nope/logs")).json()["error"] == "unknown-instance"
        r = await http.get("/backends/hello/^1/", headers={"x-backends-partition": "ghost"})
        assert r.status_code == 404 and r.json()["error"] == "backend-not-running"
        r = await http.get("/backends/hello/^1/", headers={"x-backends-partition": "bad name!"})
        assert r.status_code == 400 and r.json()["error"] == "bad-partition"
        r = await http.post("/api/backends/install", content=b"{not json")
        assert r.status_code == 400 and "JSON" in r.json()["detail"]
        deep = b'{"modules": ' + b"[" * 1000 + b"]" * 1000 + b"}"
        r = await http.post("/api/backends/install", content=deep)
        assert r.status_code == 400 and r.json()["error"] == "bad-install-request"
        assert "nested deeper than 64 levels" in r.json()["detail"]
        # Bytes are UTF-8 (RFC 8259): a UTF-16 body cannot hide its brackets inside "strings".
        hidden = ('["\\"", "x", ' + "[" * 1000 + "]" * 1000 + ', "y"]').encode("utf-16-le")
        r = await http.post("/api/backends/install", content=hidden)
        assert r.status_code == 400 and r.json()["error"] == "bad-install-request"
        r = await http.get("/backends/x")
        assert r.status_code == 404
    assert "Traceback" not in caplog.text


async def test_on_demand_start_with_dependencies(tmp_path: Path, catalog: Path, in_process_hub) -> None:
    async with in_process_hub(hub_config(tmp_path, catalog, on_demand=True)) as h, \
            httpx.AsyncClient(base_url=h.base, timeout=60) as http:
        r = await http.get("/backends/dep_a/^1.0.0/", headers={"x-backends-partition": "od"})
        assert r.status_code == 200 and r.json()["dep"]["body"]["name"] == "dep_b"
        owners = {i["name"]: i["owner"] for i in (await http.get("/api/backends/instances")).json()}
        assert owners == {"dep_a": None, "dep_b": None}


async def test_a_malformed_referer_is_ignored_by_the_proxy(tmp_path: Path, catalog: Path,
                                                           in_process_hub) -> None:
    async with in_process_hub(hub_config(tmp_path, catalog)) as h, \
            httpx.AsyncClient(base_url=h.base, timeout=60) as http:
        r = await http.post("/api/backends/install", json=["hello#^1.0.0"])  # the Default partition
        assert r.status_code == 200, r.text
        # No partition header nor query: the partition would come from the Referer's query, but
        # this one is not a URL (an unclosed IPv6 literal). It is ignored, as browsers' are.
        for referer in (b"http://[::1", b"http://x:port/", b"\xff\xfe"):
            request = (b"GET /backends/hello/^1/ HTTP/1.1\r\nHost: 127.0.0.1\r\nReferer: " + referer
                       + b"\r\nConnection: close\r\n\r\n")
            response = await raw_exchange(h.port, request)
            assert response.startswith(b"HTTP/1.1 200 "), (referer, response)
        r = await http.get("/backends/hello/^1/", headers={"referer": "http://[::1]/?backends-partition=Q"})
        assert r.status_code == 404 and r.json()["partitionId"] == "Q"  # a well-formed one still counts
