"""Hubs in a cluster through the real command line and a real Redis: they see each other at
/api/cluster, a hub killed with SIGKILL disappears once its heartbeat expires and its lease is taken
by another hub with a larger fencing token, a hub stopped cleanly leaves at once, and a hub without
[cluster] runs alone."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis.asyncio as redis

from hubtest import ROOT, SRC, HubProcess, eventually, serve_refused, wait_serving, write_config
from roomhub.cluster import Lease, LeaseTable

LEASE = 1.5  # seconds: short, so that the expiry tests take a few seconds


def cluster_config(directory: Path, redis_url: str, extra: str = "") -> Path:
    return write_config(
        directory,
        f'[cluster]\nredis = "{redis_url}"\nprefix = "it"\nlease_seconds = {LEASE}\n'
        f"heartbeat_seconds = 0.2\n{extra}",
    )


def start_on_port_0(config: Path, tmp_path: Path, name: str) -> HubProcess:
    """``roomhub serve --port 0``: the system picks the port, the hub logs which one."""
    log_path = tmp_path / f"{name}.log"
    args = [sys.executable, "-m", "roomhub", "serve", str(config), "--port", "0",
            "--data-dir", str(tmp_path / name)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(SRC)})
    deadline = time.monotonic() + 20
    while not (found := re.search(r"listening on http://127\.0\.0\.1:(\d+)/", log_path.read_text())):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no port logged:\n{log_path.read_text()}")
        time.sleep(0.05)
    hub = HubProcess(proc, int(found.group(1)), log_path)
    wait_serving(proc, f"{hub.base}/api/health", hub.log, 20)
    return hub


@pytest.fixture
def port0_hubs(tmp_path):
    started: list[HubProcess] = []

    def start(config: Path, name: str) -> HubProcess:
        hub = start_on_port_0(config, tmp_path, name)
        started.append(hub)
        return hub

    yield start
    for hub in started:
        hub.stop(signal.SIGKILL if hub.proc.poll() is None else signal.SIGTERM)


async def cluster_of(hub: HubProcess) -> dict:
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{hub.base}/api/cluster")
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_two_hubs_see_each_other_and_advertise_their_real_port(tmp_path, redis_url, port0_hubs,
                                                                    hub_process):
    config = cluster_config(tmp_path / "conf", redis_url)
    a = port0_hubs(config, "a")  # port 0: the advertised address has the port picked at bind
    b = hub_process(config, "--data-dir", str(tmp_path / "b"))

    async def both_listed() -> dict | None:
        seen = await cluster_of(a)
        return seen if len(seen["hubs"]) == 2 else None

    seen = await eventually(both_listed, what="both hubs in the cluster")
    advertised = sorted(h["advertise"] for h in seen["hubs"])
    assert advertised == sorted([f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"])
    assert {h["id"] for h in seen["hubs"]} == {seen["hub"], (await cluster_of(b))["hub"]}
    assert seen["lease_seconds"] == LEASE and seen["leases"] == []
    assert all(h["rooms"] == 0 and "connections" in h and h["pid"] > 0 for h in seen["hubs"])
    await eventually(lambda: "2 hub(s)" in a.log(), what="the log to list both hubs")
    # a clean stop leaves at once (no waiting for the heartbeat to expire)
    b.stop(signal.SIGTERM)
    assert len((await cluster_of(a))["hubs"]) == 1


async def test_a_killed_hub_disappears_and_its_lease_is_taken_with_a_larger_token(
    tmp_path, redis_url, hub_process
):
    config = cluster_config(tmp_path / "conf", redis_url)
    survivor = hub_process(config, "--data-dir", str(tmp_path / "survivor"))
    holder = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).with_name("lease_holder.py")), str(config),
        str(tmp_path / "holder"), "yjs/notes",
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": f"{SRC}:{ROOT / 'tests'}"},
    )
    try:
        assert holder.stdout is not None
        line = await asyncio.wait_for(holder.stdout.readline(), 30)
        held = json.loads(line)
        seen = await eventually(
            lambda: _with_hubs(cluster_of(survivor), 2), what="the lease holder in the cluster"
        )
        assert seen["leases"] == [
            {"room": "yjs/notes", "owner": held["run"], "hub": held["hub"], "token": held["token"],
             "ttl": seen["leases"][0]["ttl"]}
        ]
        holder.send_signal(signal.SIGKILL)
        await holder.wait()

        async def expired() -> dict | None:
            seen = await cluster_of(survivor)
            return seen if len(seen["hubs"]) == 1 and not seen["leases"] else None

        seen = await eventually(expired, within=LEASE * 10, what="the killed hub and its lease to expire")
        assert held["hub"] not in [h["id"] for h in seen["hubs"]]
        client = redis.Redis.from_url(redis_url)
        try:
            table = LeaseTable(client, "it", LEASE)
            taken = await table.acquire("yjs/notes", "another-hub")
            assert isinstance(taken, Lease) and taken.token > held["token"]
            stale = Lease("yjs/notes", held["run"], held["token"])
            assert await table.renew(stale) is None  # the dead hub's token is refused
            assert not await table.release(stale)
            assert (await cluster_of(survivor))["leases"][0]["owner"] == "another-hub"
        finally:
            await client.aclose()
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()


async def _with_hubs(pending, count: int) -> dict | None:
    seen = await pending
    return seen if len(seen["hubs"]) == count else None


async def test_without_cluster_the_hub_runs_alone(tmp_path, hub_process):
    hub = hub_process(write_config(tmp_path / "conf", ""))
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{hub.base}/api/cluster")
    assert answer.status_code == 404
    assert "no [cluster]" in answer.json()["detail"]


def test_a_hub_whose_redis_does_not_answer_refuses_to_start(tmp_path):
    from hubtest import free_port

    config = cluster_config(tmp_path / "conf", f"redis://:secret@127.0.0.1:{free_port()}/0")
    refused = serve_refused(config, tmp_path / "data")
    assert refused.returncode == 2
    assert "cluster.redis redis://127.0.0.1:" in refused.stdout and "not reachable" in refused.stdout
    assert "secret" not in refused.stdout


async def test_a_hub_that_fails_to_start_after_joining_leaves_the_cluster(tmp_path, redis_url):
    """The cluster is joined before the faces start; a face that cannot start (its database does
    not answer) stops the hub, which leaves at once instead of staying listed for a lease time."""
    from hubtest import free_port

    dead_db = f"postgresql://roomhub@127.0.0.1:{free_port()}/x"
    config = write_config(
        tmp_path / "conf",
        f'[cluster]\nredis = "{redis_url}"\nprefix = "it"\nlease_seconds = 60\n'
        f'[documents]\nstore = "postgres"\n[documents.postgres]\ndsn = "{dead_db}"\nconnect_timeout = 1\n',
    )
    refused = await asyncio.to_thread(serve_refused, config, tmp_path / "data")
    assert refused.returncode != 0 and "not reachable" in refused.stdout
    assert "joined as" in refused.stdout and "left" in refused.stdout
    client = redis.Redis.from_url(redis_url)
    try:
        assert await client.keys("it:hub:*") == []
    finally:
        await client.aclose()
