"""A partition's backends reached through any hub: three real hub processes sharing a real Redis.

A partition's instances run on the hub holding its lease (``backends:<partition>``); installs,
the partition's API, the proxy's HTTP requests (streamed both ways) and its WebSockets that reach
another hub are forwarded there (roomhub/backends/hubs.py). The hub-to-hub headers never reach a
backend, which sees the client as without a cluster. A holder killed with SIGKILL: the next
request through another hub waits for the lease to lapse and starts the backend again there."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import redis.asyncio as redis
import websockets

from backends.backends_helpers import FRAMING_BACKEND, stdlib_package
from cluster.test_rooms_relay import LEASE, PREFIX, cluster_section, lease_owner, run_of
from hubtest import HubProcess

BASE = "/backends/framing/0.1.0"
MiB = 1024 * 1024


def config(tmp_path: Path, redis_url: str, on_demand: bool, server: str = "") -> Path:
    catalog = tmp_path / "catalog"
    if not catalog.exists():
        stdlib_package(catalog, "framing", "0.1.0", server=FRAMING_BACKEND)
    path = tmp_path / "roomhub.toml"
    path.write_text(f'{server}[backends]\ncatalogs = [{json.dumps(str(catalog))}]\ngrace_period = 0.5\n'
                    f"idle_timeout = 60.0\non_demand = {json.dumps(on_demand)}\n{cluster_section(redis_url)}")
    return path


def three_hubs(tmp_path: Path, hub_process, config_path: Path) -> list[HubProcess]:
    return [hub_process(config_path, "--data-dir", str(tmp_path / name)) for name in ("a", "b", "c")]


async def instances_on(hub: HubProcess) -> list[dict]:
    async with httpx.AsyncClient(timeout=10) as http:
        return (await http.get(f"{hub.base}/api/backends/instances")).json()


async def test_a_partition_s_backends_are_reached_through_every_hub(tmp_path, redis_url, hub_process):
    a_hub, b_hub, c_hub = three_hubs(tmp_path, hub_process, config(tmp_path, redis_url, on_demand=False))
    team = {"x-backends-partition": "team"}
    async with httpx.AsyncClient(timeout=120) as http:
        # the first hub an install of the partition reaches holds it
        r = await http.post(f"{b_hub.base}/api/backends/install", json=["framing#0.1.0"], headers=team)
        assert r.status_code == 200, r.text
        assert await lease_owner(redis_url, "backends:team") == await run_of(b_hub)
        # an install through another hub is forwarded to the holder and answered by it
        r = await http.post(f"{c_hub.base}/api/backends/install",
                            json={"modules": ["roomhub_demo_backend#^0.1.0"], "partition": "team"})
        assert r.status_code == 200, r.text
        assert sorted(i["name"] for i in await instances_on(b_hub)) == ["framing", "roomhub_demo_backend"]
        assert await instances_on(a_hub) == [] and await instances_on(c_hub) == []
        # the partition's own API answers the same through every hub
        described = [(await http.get(f"{h.base}/api/backends/partitions/team")).json()
                     for h in (a_hub, b_hub, c_hub)]
        uids = [sorted(i["uid"] for i in d["instances"]) for d in described]
        assert uids[0] == uids[1] == uids[2] and len(uids[0]) == 2

        # HTTP through a hub that does not hold the partition: a chunked body streamed both ways
        blocks = [os.urandom(10_000 + i) for i in range(20)]

        async def chunked() -> AsyncIterator[bytes]:
            for block in blocks:
                yield block

        r = await http.post(f"{a_hub.base}{BASE}/echo", content=chunked(),
                            headers={**team, "x-custom": "yes"})
        answer = r.json()
        assert r.status_code == 200 and answer["chunked"] is True, r.text
        assert answer["sha256"] == hashlib.sha256(b"".join(blocks)).hexdigest()
        sent = answer["headers"]
        # the backend sees the client's request, as without a cluster, and nothing of the relay
        assert sent["x-custom"] == "yes" and sent["x-backends-partition"] == "team"
        assert sent["x-forwarded-for"] == "127.0.0.1" and sent["x-forwarded-prefix"] == BASE
        assert sent["x-forwarded-host"] == f"127.0.0.1:{a_hub.port}"
        assert not [name for name in sent if name.startswith("x-roomhub")], sent
        # keep-alive requests through the forwarding hub reuse its connection to the holder
        texts = [await http.get(f"{c_hub.base}{BASE}/text", headers=team) for _ in range(5)]
        assert [t.text for t in texts] == ["hello world"] * 5
        r = await http.get(f"{c_hub.base}{BASE}/chunked/30", headers=team)
        assert r.headers["transfer-encoding"] == "chunked"
        assert r.text == "".join(f"piece-{i}\n" for i in range(30))
        # a large body crosses two hubs without being buffered whole
        size = 30 * MiB
        block = os.urandom(MiB)

        async def upload() -> AsyncIterator[bytes]:
            for _ in range(size // MiB):
                yield block

        r = await http.post(f"{c_hub.base}/backends/roomhub_demo_backend/0.1.0/digest", content=upload(),
                            headers=team)
        assert r.json() == {"bytes": size, "sha256": hashlib.sha256(block * (size // MiB)).hexdigest()}

        # a forged hub-to-hub request is refused
        r = await http.get(f"{a_hub.base}{BASE}/text", headers={**team, "x-roomhub-relay": "guess",
                                                                "x-roomhub-relay-key": "backends:team"})
        assert r.status_code == 403 and r.json()["error"] == "bad-relay-credentials", r.text
        # a backend the partition does not run: the holder's own 404, through any hub
        r = await http.get(f"{a_hub.base}/backends/nothing/1.0.0/", headers=team)
        assert r.status_code == 404 and r.json()["error"] == "backend-not-running", r.text

    # a WebSocket through a hub that does not hold the partition
    url = f"{a_hub.ws}/backends/roomhub_demo_backend/%5E0.1.0/ws?backends-partition=team"
    async with websockets.connect(url) as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"
        await ws.send(b"\x00\x01binary")
        assert await ws.recv() == b"\x00\x01binary"
    # the holder's refusal of a WebSocket reaches the client
    try:
        async with websockets.connect(url.replace("roomhub_demo_backend", "nothing")):
            raise AssertionError("a WebSocket to a backend that does not run was accepted")
    except websockets.InvalidStatus as exc:
        assert exc.response.status_code == 404
        assert json.loads(exc.response.body)["error"] == "backend-not-running"
    assert await instances_on(a_hub) == [] and await instances_on(c_hub) == []


async def test_a_killed_partition_hub_s_backend_starts_again_through_another_hub(tmp_path, redis_url,
                                                                                  hub_process):
    a_hub, b_hub, c_hub = three_hubs(tmp_path, hub_process, config(tmp_path, redis_url, on_demand=True))
    team = {"x-backends-partition": "team"}
    async with httpx.AsyncClient(timeout=60) as http:
        r = await http.get(f"{a_hub.base}{BASE}/text", headers=team)  # started on demand on hub a
        assert r.text == "hello world"
        assert await lease_owner(redis_url, "backends:team") == await run_of(a_hub)
        r = await http.get(f"{b_hub.base}{BASE}/text", headers=team)  # forwarded to hub a
        assert r.text == "hello world" and await instances_on(b_hub) == []
        a_hub.stop(signal.SIGKILL)
        loop = asyncio.get_running_loop()
        started = loop.time()
        # through hub b (which still knows hub a as the holder): it waits for the lease to lapse
        r = await http.get(f"{b_hub.base}{BASE}/text", headers=team)
        elapsed = loop.time() - started
        assert r.status_code == 200 and r.text == "hello world", r.text
        holder = await lease_owner(redis_url, "backends:team")
        assert holder in (await run_of(b_hub), await run_of(c_hub))
        on = [len(await instances_on(h)) for h in (b_hub, c_hub)]
        assert sorted(on) == [0, 1], on  # started again on one hub only
        assert elapsed < LEASE * 4 + 10, elapsed  # the lease time, then an on-demand start
        r = await http.get(f"{c_hub.base}{BASE}/text", headers=team)
        assert r.text == "hello world"


async def test_a_forwarded_request_needs_no_token_on_the_holder_but_the_secret(tmp_path, redis_url,
                                                                              hub_process):
    """The hub a client reached checks its token; the holder, which may not know that token (an
    instance's own is known to its hub only), lets a request with the cluster's secret pass."""
    auth = '[server.auth]\ntokens = ["s3cret-token"]\n'
    hubs = three_hubs(tmp_path, hub_process, config(tmp_path, redis_url, True, auth))
    a_hub, b_hub, _ = hubs
    team = {"x-backends-partition": "team"}
    bearer = {"authorization": "Bearer s3cret-token"}
    async with httpx.AsyncClient(timeout=60) as http:
        r = await http.get(f"{a_hub.base}{BASE}/text", headers={**team, **bearer})  # a takes it
        assert r.text == "hello world"
        r = await http.get(f"{b_hub.base}{BASE}/text", headers=team)
        assert r.status_code == 401  # the client's hub checks the token
        r = await http.get(f"{b_hub.base}{BASE}/text", headers={**team, **bearer})
        assert r.text == "hello world"
        # the holder now (a, unless a loaded machine let its lease lapse and b took it)
        runs = {await run_of(h, bearer): h for h in hubs}
        holder = runs[await lease_owner(redis_url, "backends:team")]
        secret = await redis_get(redis_url, f"{PREFIX}:relay-secret")
        relayed = {**team, "x-roomhub-relay": secret, "x-roomhub-relay-key": "backends:team"}
        r = await http.get(f"{holder.base}{BASE}/text", headers=relayed)
        assert r.status_code == 200 and r.text == "hello world"
        r = await http.get(f"{holder.base}{BASE}/text", headers={**relayed, "x-roomhub-relay": "guess"})
        assert r.status_code == 401  # no secret, no token: the door refuses


async def redis_get(redis_url: str, key: str) -> str:
    async with redis.Redis.from_url(redis_url) as client:
        value = await client.get(key)
    assert value is not None, key
    return value.decode()
