"""Installs from a local catalog into venvs, through the real HTTP API and partition socket."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
from backends_helpers import hub_config, partition_socket


async def test_install_into_a_venv_reports_progress_and_proxies(tmp_path: Path, catalog: Path,
                                                                 in_process_hub) -> None:
    async with in_process_hub(hub_config(tmp_path, catalog)) as h, \
            httpx.AsyncClient(base_url=h.base, timeout=60) as http, \
            partition_socket(h.ws, "P1", owner="tab-1") as sock:
        r = await http.post("/api/backends/install", json=["hello#^1.0.0 as hi"],
                            headers={"x-backends-partition": "P1", "x-install-id": "i-1"})
        assert r.status_code == 200, r.text
        [backend] = r.json()["backends"]
        assert backend["version"] == "1.2.0" and backend["alias"] == "hi"
        assert backend["urlBase"] == "/backends/hello/1.2.0" and backend["partitionId"] == "P1"
        await sock.wait_for(lambda e: e.get("installId") == "i-1" and e.get("event") == "listening")
        order = [(e["type"], e["event"]) for e in sock.events if e.get("installId") == "i-1" and "event" in e]
        assert order == [("DownloadBackendEvent", "started"), ("DownloadBackendEvent", "succeeded"),
                         ("InstallBackendEvent", "started"), ("InstallBackendEvent", "succeeded"),
                         ("StartBackendEvent", "starting"), ("StartBackendEvent", "listening")]
        build_lines = [e["text"] for e in sock.of_type("BackendLog") if e["stage"] == "install"]
        assert any("-m venv" in line for line in build_lines)
        await sock.wait_for(lambda e: e["type"] == "BackendLog" and e["stage"] == "start"
                            and e["text"] == "listening")
        p1 = {"x-backends-partition": "P1"}
        answer = (await http.get("/backends/hello/^1/anything?x=1", headers=p1)).json()
        assert answer == {**answer, "name": "hello", "partition": "P1", "greeting": "hi",
                          "path": "/anything?x=1"}

        # same install again: the instance is reused; another build option restarts it
        again = (await http.post("/api/backends/install", json=["hello#^1.0.0"],
                                 headers={"x-backends-partition": "P1"})).json()["backends"][0]
        assert again["uid"] == backend["uid"] and again["reused"]
        changed = (await http.post("/api/backends/install", headers={"x-backends-partition": "P1"}, json={
            "modules": ["hello#^1.0.0"], "configurations": {"hello": {"build": {"greeting": "bonjour"}}},
        })).json()["backends"][0]
        assert changed["uid"] != backend["uid"] and changed["fingerprint"] != backend["fingerprint"]
        answer = (await http.get("/backends/hello/1.2.0/", headers={"x-backends-partition": "P1"})).json()
        assert answer["greeting"] == "bonjour"
        old = (await http.get(f"/api/backends/instances/{backend['uid']}")).json()
        assert old["status"] == "stopped" and "configuration" in old["stopReason"]

        logs = (await http.get(f"/api/backends/instances/{changed['uid']}/logs")).json()
        assert "listening" in logs["server_outputs"] and any("venv" in x for x in logs["install_outputs"])
        builds = (await http.get("/api/backends/builds")).json()
        assert {b["fingerprint"] for b in builds} >= {backend["fingerprint"], changed["fingerprint"]}


async def test_dependencies_start_first_in_the_same_partition(tmp_path: Path, catalog: Path,
                                                               in_process_hub) -> None:
    async with in_process_hub(hub_config(tmp_path, catalog)) as h, \
            httpx.AsyncClient(base_url=h.base, timeout=60) as http, \
            partition_socket(h.ws, "deps") as sock:
        r = await http.post("/api/backends/install", json={"modules": ["dep_a as a"], "partition": "deps"})
        assert r.status_code == 200, r.text
        names = [b["name"] for b in r.json()["backends"]]
        assert names == ["dep_b", "dep_a"]
        await sock.wait_for(lambda e: e.get("name") == "dep_a" and e.get("event") == "listening")
        starts = [(e["name"], e["event"]) for e in sock.of_type("StartBackendEvent")]
        assert starts == [("dep_b", "starting"), ("dep_b", "listening"), ("dep_a", "starting"),
                          ("dep_a", "listening")]
        a = (await http.get("/backends/dep_a/*/", headers={"x-backends-partition": "deps"})).json()
        # dep_a called dep_b through the hub, in its own partition, before it listened
        assert a["dep"]["status"] == 200 and a["dep"]["body"]["partition"] == "deps"
        assert a["dep"]["body"]["name"] == "dep_b"
        instances = {i["name"]: i for i in (await http.get("/api/backends/instances")).json()}
        assert instances["dep_a"]["dependencies"] == [instances["dep_b"]["uid"]]


async def test_loopback_port_backend(tmp_path: Path, catalog: Path, in_process_hub) -> None:
    async with in_process_hub(hub_config(tmp_path, catalog)) as h, \
            httpx.AsyncClient(base_url=h.base, timeout=60) as http:
        r = await http.post("/api/backends/install", json=["porty"])
        assert r.status_code == 200, r.text
        inst = (await http.get(f"/api/backends/instances/{r.json()['backends'][0]['uid']}")).json()
        assert inst["listen"].startswith("127.0.0.1:")
        assert (await http.get("/backends/porty/0.1.0/")).json()["partition"] == "Default"


async def test_modules_option_installs_from_the_package_index(tmp_path: Path, catalog: Path,
                                                              in_process_hub) -> None:
    """The ``modules`` option pip-installs into the venv (a tiny pure-Python wheel from the index)."""
    async with in_process_hub(hub_config(tmp_path, catalog)) as h, \
            httpx.AsyncClient(base_url=h.base, timeout=120) as http:
        r = await http.post("/api/backends/install", json={
            "modules": ["pyrun_backend as py"],
            "configurations": {"pyrun_backend": {"build": {"modules": "six==1.16.0"}}}})
        assert r.status_code == 200, r.text
        run = await http.post("/backends/pyrun_backend/^0.2.0/run", json={
            "cellId": "c", "code": "import six, sys\nwhere = six.__file__\nexe = sys.executable",
            "capturedOut": ["where", "exe"]})
        out = run.json()["capturedOut"]
        fp = r.json()["backends"][0]["fingerprint"]
        assert out["where"].startswith(str(tmp_path / "data" / "backends" / "builds" / fp)), out
        assert os.path.dirname(out["exe"]).endswith("bin")


async def test_with_token_auth_a_backend_calls_another_with_its_own_token(tmp_path: Path, catalog: Path,
                                                                          in_process_hub) -> None:
    config = hub_config(tmp_path, catalog)
    config.write_text(config.read_text() + '[server.auth]\ntokens = ["sesame"]\n')
    auth = {"authorization": "Bearer sesame"}
    async with in_process_hub(config) as h, \
            httpx.AsyncClient(base_url=h.base, timeout=60, headers=auth) as http:
        r = await http.post("/api/backends/install", json={"modules": ["dep_a"], "partition": "tok"})
        assert r.status_code == 200, r.text
        a = (await http.get("/backends/dep_a/*/", headers={"x-backends-partition": "tok"})).json()
        assert a["dep"]["status"] == 200 and a["dep"]["body"]["name"] == "dep_b"  # through the door
        tokens = set(h.hub.program_tokens)
        assert len(tokens) == 2 and "sesame" not in tokens
        async with httpx.AsyncClient(base_url=h.base, timeout=10) as bare:
            assert (await bare.get("/api/rooms")).status_code == 401
            for token in tokens:  # each instance's token opens the door while it runs
                r = await bare.get("/api/rooms", headers={"authorization": f"Bearer {token}"})
                assert r.status_code == 200
            await http.delete("/api/backends/partitions/tok")
            assert h.hub.program_tokens == set()
            for token in tokens:  # and no longer once it stopped
                r = await bare.get("/api/rooms", headers={"authorization": f"Bearer {token}"})
                assert r.status_code == 401
