"""The proxy streams large bodies both ways without buffering, carries WebSockets, and serves /docs."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import websockets
from backends_helpers import hub_config

MiB = 1024 * 1024


def config(tmp_path: Path, catalog: Path) -> Path:
    return hub_config(tmp_path, catalog)


async def test_large_body_streams_both_ways_without_buffering(tmp_path: Path, catalog: Path,
                                                               hub_process) -> None:
    hub = hub_process(config(tmp_path, catalog))
    headers = {"x-backends-partition": "big"}
    async with httpx.AsyncClient(base_url=hub.base, timeout=120) as http:
        r = await http.post("/api/backends/install", json=["roomhub_demo_backend#^0.1.0"], headers=headers)
        assert r.status_code == 200, r.text
        rss_before = (await http.get("/api/metrics")).json()["max_rss_bytes"]
        size = 100 * MiB
        block = os.urandom(MiB)

        async def upload() -> AsyncIterator[bytes]:
            for _ in range(size // MiB):
                yield block

        expected = hashlib.sha256(block * (size // MiB)).hexdigest()
        r = await http.post("/backends/roomhub_demo_backend/0.1.0/digest", content=upload(), headers=headers)
        assert r.json() == {"bytes": size, "sha256": expected}
        async with http.stream("GET", f"/backends/roomhub_demo_backend/0.1.0/bytes/{size}",
                               headers=headers) as response:
            assert response.headers["content-length"] == str(size)
            assert sum([len(c) async for c in response.aiter_raw()]) == size
        rss_after = (await http.get("/api/metrics")).json()["max_rss_bytes"]
        # 200 MB went through the hub; a buffering proxy would have grown by at least 100 MB
        assert rss_after - rss_before < 40 * MiB, (rss_before, rss_after)


async def test_websocket_passthrough_and_every_method(tmp_path: Path, catalog: Path, in_process_hub) -> None:
    async with in_process_hub(config(tmp_path, catalog)) as h, \
            httpx.AsyncClient(base_url=h.base, timeout=60) as http:
        r = await http.post("/api/backends/install",
                            json={"modules": ["roomhub_demo_backend"], "partition": "W"})
        assert r.status_code == 200, r.text
        url = f"{h.ws}/backends/roomhub_demo_backend/%5E0.1.0/ws?backends-partition=W"
        async with websockets.connect(url) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00\x01binary")
            assert await ws.recv() == b"\x00\x01binary"
            big = "x" * 500_000
            await ws.send(big)
            assert await ws.recv() == big
        # a WebSocket to a path the backend does not serve is refused, with no crash
        try:
            async with websockets.connect(url.replace("/ws?", "/nope?")) as ws:
                await ws.recv()
        except (websockets.InvalidStatus, websockets.ConnectionClosed):
            pass
        base = "/backends/roomhub_demo_backend/0.1.0"
        headers = {"x-backends-partition": "W"}
        for method in ("PUT", "PATCH", "DELETE", "OPTIONS"):
            r = await http.request(method, f"{base}/hello-world", headers=headers)
            assert r.status_code == 405, (method, r.status_code)  # the backend's own answer, passed on
        r = await http.post(f"{base}/cow-say", json={"message": "moo", "character": "cow"}, headers=headers)
        assert r.status_code == 200 and "< moo >" in r.text and "(oo)" in r.text
        r = await http.post(f"{base}/cow-say", json={"message": 3}, headers=headers)
        assert r.status_code == 422  # upstream errors are passed through as they are
        docs = await http.get(f"{base}/docs", headers=headers)
        assert docs.status_code == 200 and f"{base}/openapi.json" in docs.text
        # a /docs tab sends no header: the partition comes from the query, then from the Referer
        spec = await http.get(f"{base}/openapi.json",
                              headers={"referer": f"{h.base}{base}/docs?backends-partition=W"})
        assert spec.status_code == 200 and "/cow-say" in spec.json()["paths"]
        part = await http.get(f"{base}/partition?backends-partition=W")
        assert part.json() == {"partition": "W", "basePath": base}


async def test_proxy_keeps_the_door_checks(tmp_path: Path, catalog: Path, in_process_hub) -> None:
    """The proxy is served ahead of the router, but token auth and the WebSocket origin check still apply."""
    path = config(tmp_path, catalog)
    path.write_text('[server]\nallowed_origins = ["https://docs.example.org"]\n'
                    '[server.auth]\ntokens = ["s3cret-token"]\n' + path.read_text())
    async with in_process_hub(path) as h, httpx.AsyncClient(base_url=h.base, timeout=30) as http:
        url = "/backends/roomhub_demo_backend/0.1.0/hello-world"
        refused = await http.get(url, headers={"x-backends-partition": "D"})
        assert refused.status_code == 401 and "missing token" in refused.json()["detail"]
        let_in = await http.get(url, headers={"x-backends-partition": "D",
                                              "authorization": "Bearer s3cret-token"})
        assert let_in.status_code == 404 and let_in.json()["error"] == "backend-not-running"
        ws_url = f"{h.ws}/backends/roomhub_demo_backend/0.1.0/ws?backends-partition=D&token=s3cret-token"
        for origin, status in (("https://evil.example.com", 403), ("https://docs.example.org", 404)):
            try:
                async with websockets.connect(ws_url, origin=origin, open_timeout=10):
                    raise AssertionError("the handshake should have been refused")
            except websockets.InvalidStatus as exc:
                assert exc.response.status_code == status, (origin, exc.response.status_code)
