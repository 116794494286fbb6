"""Partitions are rooms: separate state per partition, owner lifetime, reloads, idle timeout, terminate."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from backends_helpers import hub_config, partition_socket

from hubtest import eventually


async def run(http: httpx.AsyncClient, partition: str, code: str, out: list[str]) -> dict:
    r = await http.post("/backends/pyrun_backend/^0.2.0/run", headers={"x-backends-partition": partition},
                        json={"cellId": "cell-1", "code": code, "capturedIn": {}, "capturedOut": out})
    assert r.status_code == 200, r.text
    return r.json()


async def test_two_partitions_have_separate_pyrun_state(tmp_path: Path, catalog: Path,
                                                         in_process_hub) -> None:
    async with in_process_hub(hub_config(tmp_path, catalog)) as h, \
            httpx.AsyncClient(base_url=h.base, timeout=60) as http:
        uids = {}
        for partition in ("left", "right"):
            r = await http.post("/api/backends/install",
                                json={"modules": ["pyrun_backend#^0.2.0 as py"], "partition": partition})
            assert r.status_code == 200, r.text
            uids[partition] = r.json()["backends"][0]["uid"]
        assert uids["left"] != uids["right"]
        await run(http, "left", "counter = 41", [])
        await run(http, "right", "counter = 1", [])
        left = await run(http, "left", "counter += 1\nprint('left', counter)", ["counter"])
        right = await run(http, "right", "counter += 1", ["counter"])
        assert left["capturedOut"] == {"counter": 42} and left["output"] == "left 42\n"
        assert right["capturedOut"] == {"counter": 2}
        # pyrun's error contract: kind, message and the line in the cell
        err = await run(http, "left", "a = 1\nb = 2\nraise ValueError('no')", [])
        assert err["error"]["kind"] == "Runtime" and err["error"]["lineNumber"] == 3
        assert "ValueError: no" in err["error"]["message"]
        syntax = await run(http, "left", "x = 1\ny = (", [])
        assert syntax["error"]["kind"] == "AST" and syntax["error"]["lineNumber"] == 2
        captured = await http.post("/backends/pyrun_backend/0.2.2/run",
                                   headers={"x-backends-partition": "left"},
                                   json={"cellId": "c", "code": "z = x * 2", "capturedIn": {"x": 21},
                                         "capturedOut": ["z"]})
        assert captured.json()["capturedOut"] == {"z": 42}


async def test_closing_the_owning_socket_stops_its_backends_after_the_grace_period(
        tmp_path: Path, catalog: Path, in_process_hub) -> None:
    async with in_process_hub(hub_config(tmp_path, catalog, grace_period=1.0)) as h, \
            httpx.AsyncClient(base_url=h.base, timeout=60) as http:
        async with partition_socket(h.ws, "tab-7", owner="tab-7"):
            r = await http.post("/api/backends/install", json=["hello"],
                                headers={"x-backends-partition": "tab-7", "x-backends-owner": "tab-7"})
            uid = r.json()["backends"][0]["uid"]
        closed = asyncio.get_running_loop().time()
        # within the grace period the backend still answers
        still = await http.get("/backends/hello/*/", headers={"x-backends-partition": "tab-7"})
        assert still.status_code == 200
        inst = await eventually(lambda: _status(http, uid, "stopped"), within=10)
        assert asyncio.get_running_loop().time() - closed >= 0.9
        assert inst["stopReason"].startswith("the owning tab")
        assert (await http.get("/api/backends/partitions/tab-7")).status_code == 404


async def test_a_reload_keeps_the_backends(tmp_path: Path, catalog: Path, in_process_hub) -> None:
    async with in_process_hub(hub_config(tmp_path, catalog, grace_period=1.5)) as h, \
            httpx.AsyncClient(base_url=h.base, timeout=60) as http:
        async with partition_socket(h.ws, "tab-9", owner="tab-9"):
            r = await http.post("/api/backends/install", json=["hello"],
                                headers={"x-backends-partition": "tab-9", "x-backends-owner": "tab-9"})
            uid = r.json()["backends"][0]["uid"]
        await asyncio.sleep(0.3)  # the page reloads: its socket is away for a moment
        async with partition_socket(h.ws, "tab-9", owner="tab-9") as sock:
            greeting = sock.of_type("Partition")[0]
            assert [i["uid"] for i in greeting["instances"]] == [uid]
            await asyncio.sleep(2.0)  # well past the grace period: still running
            assert (await http.get(f"/api/backends/instances/{uid}")).json()["status"] == "listening"
            again = await http.post("/api/backends/install", json=["hello"],
                                    headers={"x-backends-partition": "tab-9", "x-backends-owner": "tab-9"})
            assert again.json()["backends"][0]["uid"] == uid


async def test_named_partition_outlives_the_tab_for_backends_it_did_not_install(
        tmp_path: Path, catalog: Path, in_process_hub) -> None:
    config = hub_config(tmp_path, catalog, grace_period=0.3, idle_timeout=2.0)
    async with in_process_hub(config) as h, httpx.AsyncClient(base_url=h.base, timeout=60) as http:
        shared = (await http.post("/api/backends/install", json={"modules": ["dep_b"], "partition": "Foo"}))
        shared_uid = shared.json()["backends"][0]["uid"]
        async with partition_socket(h.ws, "Foo", owner="tab-1"):
            mine = await http.post("/api/backends/install", json={"modules": ["hello"], "partition": "Foo"},
                                   headers={"x-backends-owner": "tab-1"})
            mine_uid = mine.json()["backends"][0]["uid"]
        await eventually(lambda: _status(http, mine_uid, "stopped"), within=10)
        assert (await http.get(f"/api/backends/instances/{shared_uid}")).json()["status"] == "listening"
        stopped = await eventually(lambda: _status(http, shared_uid, "stopped"), within=15)
        assert stopped["stopReason"] == "idle timeout"


async def test_terminate_a_partition_and_an_instance(tmp_path: Path, catalog: Path, in_process_hub) -> None:
    async with in_process_hub(hub_config(tmp_path, catalog)) as h, \
            httpx.AsyncClient(base_url=h.base, timeout=60) as http:
        r = await http.post("/api/backends/install", json={"modules": ["dep_a"], "partition": "T"})
        assert [b["name"] for b in r.json()["backends"]] == ["dep_b", "dep_a"]
        listed = (await http.get("/api/backends/partitions")).json()
        assert [p["partitionId"] for p in listed] == ["T"] and len(listed[0]["instances"]) == 2
        one = r.json()["backends"][1]["uid"]
        assert (await http.delete(f"/api/backends/instances/{one}")).json()["uids"] == [one]
        gone = (await http.delete("/api/backends/partitions/T")).json()
        assert gone["uids"] == [r.json()["backends"][0]["uid"]]
        assert (await http.get("/api/backends/partitions")).json() == []


async def _status(http: httpx.AsyncClient, uid: str, status: str) -> dict | None:
    inst = (await http.get(f"/api/backends/instances/{uid}")).json()
    return inst if inst["status"] == status else None
