"""/metrics (Prometheus text format) moves as real clients of every face work; /api/ready says
when the hub can serve; the token rule covers /metrics unless server.metrics_public."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families
from pycrdt import Text

from documents.ycl import y_client
from hubtest import eventually, write_config
from pageclient import PageClient

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(http: httpx.AsyncClient) -> Samples:
    """Every sample of ``/metrics``, parsed by prometheus-client's own parser of the text format."""
    r = await http.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(r.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def actions_call(base_ws: str, action: str, data: object) -> list[dict[str, object]]:
    """One call on a fresh actions socket (Igor's message shapes): its frames up to ``close``."""
    async with websockets.connect(f"{base_ws}/actions") as ws:
        await ws.send(json.dumps({"streamId": "s1", "action": action, "data": data}))
        frames = []
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 20))
            frames.append(frame)
            if frame.get("close"):
                return frames


async def test_metrics_move_as_clients_of_every_face_work(hub_process) -> None:
    hub = hub_process(None)  # the embedded demo: every face
    async with httpx.AsyncClient(base_url=hub.base, timeout=120) as http:
        before = await scrape(http)
        for face in ("pages", "documents", "actions", "widgets", "backends"):
            assert ("roomhub_connections", (("face", face),)) in before, face
        assert value(before, "roomhub_connections", face="pages") == 0
        assert value(before, "process_resident_memory_bytes") > 0

        # pages: a terminal and a run in one room
        page = await PageClient.connect(f"{hub.ws}/tutorial/ws?roomName=metrics")
        await page.stdin("terminal", "echo metrics-$((6*7))\n")
        await page.wait_output("terminal", b"metrics-42", timeout=20)
        await page.send("run")
        finished = await page.wait_type("run", "finished", timeout=20)
        assert finished["message"]["exitCode"] == 0
        during = await scrape(http)
        assert value(during, "roomhub_connections", face="pages") == 1
        assert value(during, "roomhub_rooms", face="pages") == 1
        assert value(during, "roomhub_room_members", face="pages") == 1
        assert value(during, "roomhub_room_joins_total", face="pages") == 1
        assert value(during, "roomhub_room_creation_seconds_count", face="pages") == 1
        assert value(during, "roomhub_messages_received_total", face="pages") >= 2  # stdin, run
        sent = value(during, "roomhub_messages_sent_total", face="pages")
        assert sent >= 4  # state, output, started, finished...
        assert value(during, "roomhub_sent_bytes_total", face="pages") > sent
        assert value(during, "roomhub_executor_starts_total", kind="always") == 1
        assert value(during, "roomhub_executor_starts_total", kind="prologue") == 1
        assert value(during, "roomhub_executor_starts_total", kind="once") == 1
        assert value(during, "roomhub_executor_exits_total", kind="once", outcome="ok") == 1
        await page.close()
        torn_down = "roomhub_room_teardown_seconds_count"
        after = await eventually(lambda: _when(scrape(http), lambda s: value(s, torn_down, face="pages")),
                                 20, interval=0.1, what="the page room's teardown")
        assert value(after, "roomhub_connections", face="pages") == 0
        assert value(after, "roomhub_rooms", face="pages") == 0
        assert value(after, "roomhub_room_leaves_total", face="pages") == 1
        assert value(after, "roomhub_executor_starts_total", kind="epilogue") == 1

        # documents: a pycrdt client edits a shared text; the store commits it
        async with y_client(hub.ws, "metrics-doc") as client:
            text = client.doc.get("text", type=Text)
            text += "hello"
            docs = await eventually(
                lambda: _when(scrape(http),
                              lambda s: value(s, "roomhub_document_store_commit_seconds_count")),
                10, interval=0.05, what="a store commit")
            assert value(docs, "roomhub_connections", face="documents") == 1
            assert value(docs, "roomhub_rooms", face="documents") == 1
            assert value(docs, "roomhub_messages_received_total", face="documents") >= 2  # sync, update
            assert value(docs, "roomhub_document_store_commit_updates_sum") >= 1

        # actions: a call answered, one refused for the shape of its data, a refused connection
        frames = await actions_call(hub.ws, "demo.echo", {"x": 1})
        assert any(f.get("data") == {"x": 1} for f in frames), frames
        frames = await actions_call(hub.ws, "demo.progress", "not an object")
        assert any("error" in f for f in frames), frames
        async with websockets.connect(f"{hub.ws}/actions?roomhub=2") as ws:
            try:
                await asyncio.wait_for(ws.recv(), 10)
            except websockets.ConnectionClosed:
                pass
            assert ws.close_code == 1008
        calls = await eventually(
            lambda: _when(scrape(http), lambda s: value(s, "roomhub_action_calls_total", outcome="refused")),
            10, interval=0.05, what="the refused call counted")
        assert value(calls, "roomhub_action_calls_total", outcome="ok") == 1
        assert value(calls, "roomhub_action_call_duration_seconds_count", outcome="ok") == 1
        assert value(calls, "roomhub_connection_closes_total", face="actions", code="1008") == 1
        assert value(calls, "roomhub_messages_received_total", face="actions") == 2

        # widgets: a browser's handshake makes a session
        async with websockets.connect(f"{hub.ws}/widgets/ws") as ws:
            init = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert init["type"] == "init" and init["id"] == 0, init
            await ws.send(json.dumps({"type": "result", "id": 0}))
            widgets = await eventually(
                lambda: _when(scrape(http), lambda s: value(s, "roomhub_rooms", face="widgets")),
                10, interval=0.05, what="a widgets session")
            assert value(widgets, "roomhub_connections", face="widgets") == 1
            assert value(widgets, "roomhub_messages_sent_total", face="widgets") >= 1

        # backends: an install (a build and a start), then requests through the proxy
        headers = {"x-backends-partition": "metrics"}
        r = await http.post("/api/backends/install", json=["roomhub_demo_backend#^0.1.0"], headers=headers)
        assert r.status_code == 200, r.text
        for _ in range(3):
            r = await http.get("/backends/roomhub_demo_backend/0.1.0/hello-world", headers=headers)
            assert r.status_code == 200, r.text
        r = await http.put("/backends/roomhub_demo_backend/0.1.0/hello-world", headers=headers)
        assert r.status_code == 405
        backends = await scrape(http)
        assert value(backends, "roomhub_backend_build_duration_seconds_count", outcome="ok") == 1
        assert value(backends, "roomhub_backend_start_duration_seconds_count", outcome="ok") == 1
        assert value(backends, "roomhub_proxy_requests_total", status="200") == 3
        assert value(backends, "roomhub_proxy_requests_total", status="405") == 1
        assert value(backends, "roomhub_proxy_request_duration_seconds_count") == 4


async def _when(scraping: object, test: object) -> Samples | None:
    samples = await scraping  # type: ignore[misc]
    return samples if test(samples) else None  # type: ignore[operator]


def auth_config(tmp_path: Path, public: bool) -> Path:
    return write_config(tmp_path / ("public" if public else "private"), f"""
        [server]
        metrics_public = {"true" if public else "false"}
        [server.auth]
        tokens = ["a-long-enough-test-token"]
        [documents]
        store = "sqlite"
        """)


async def test_metrics_need_the_token_unless_public(tmp_path: Path, in_process_hub) -> None:
    bearer = {"Authorization": "Bearer a-long-enough-test-token"}
    async with in_process_hub(auth_config(tmp_path, public=False)) as h, \
            httpx.AsyncClient(base_url=h.base, timeout=30) as http:
        r = await http.get("/metrics")
        assert r.status_code == 401, r.text
        assert (await http.get("/metrics", headers=bearer)).status_code == 200
        assert (await http.get("/api/admin")).status_code == 401
        assert (await http.get("/admin")).status_code == 401
        assert (await http.get("/api/ready")).status_code == 200  # a probe needs no token
    async with in_process_hub(auth_config(tmp_path, public=True)) as h, \
            httpx.AsyncClient(base_url=h.base, timeout=30) as http:
        r = await http.get("/metrics")
        assert r.status_code == 200 and "roomhub_connections" in r.text
        assert (await http.get("/api/admin")).status_code == 401  # only /metrics is opened


async def test_ready_until_the_store_stops_answering(tmp_path: Path, in_process_hub) -> None:
    config = write_config(tmp_path, """
        [documents]
        store = "sqlite"
        """)
    async with in_process_hub(config) as h, httpx.AsyncClient(base_url=h.base, timeout=30) as http:
        r = await http.get("/api/ready")
        assert r.status_code == 200 and r.json()["status"] == "ready", r.text
        # The store goes away under the running hub (as a database server would).
        await h.hub.face("documents").store.close()  # type: ignore[attr-defined]
        r = await http.get("/api/ready")
        assert r.status_code == 503, r.text
        body = r.json()
        assert body["status"] == "unavailable"
        assert any("documents: the sqlite store does not answer" in reason for reason in body["reasons"])
        assert (await http.get("/api/health")).status_code == 200  # alive, not ready


async def test_store_commits_and_compactions_are_counted(tmp_path: Path, in_process_hub) -> None:
    config = write_config(tmp_path, """
        [documents]
        store = "sqlite"
        compact_after = 5
        [documents.sqlite]
        commit_window = 0.01
        """)
    async with in_process_hub(config) as h, httpx.AsyncClient(base_url=h.base, timeout=30) as http:
        async with y_client(h.ws, "compacted") as client:
            text = client.doc.get("text", type=Text)
            for i in range(12):  # one update, one commit each: past compact_after twice
                text += str(i)
                await eventually(lambda i=i: _when(scrape(http), lambda s, i=i: value(
                    s, "roomhub_document_store_commit_updates_sum") >= i + 1), 10, interval=0.02,
                    what=f"update {i} committed")
            samples = await eventually(
                lambda: _when(scrape(http), lambda s: value(s, "roomhub_document_compactions_total")),
                10, interval=0.05, what="a compaction")
        assert value(samples, "roomhub_document_store_commit_seconds_count") >= 12
        assert value(samples, "roomhub_document_store_commit_seconds_sum") > 0


async def test_limit_refusals_are_counted_by_face_and_code(tmp_path: Path, in_process_hub) -> None:
    config = write_config(tmp_path, """
        [server.limits]
        max_connections = 1
        [pages."/p"]
        html = "page.html"
        [actions]
        """)
    async with in_process_hub(config) as h, httpx.AsyncClient(base_url=h.base, timeout=30) as http:
        page = await PageClient.connect(f"{h.ws}/p/ws?roomName=full")
        await page.wait_type(None, "joined")
        for url in (f"{h.ws}/p/ws?roomName=other", f"{h.ws}/actions"):
            # Refused at the handshake: HTTP 503 with the reason, counted as the 1013 it means.
            with pytest.raises(websockets.InvalidStatus) as refused:
                await websockets.connect(url)
            assert refused.value.response.status_code == 503, url
            assert json.loads(refused.value.response.body) == {"detail": "connection limit reached"}
        samples = await scrape(http)
        assert value(samples, "roomhub_connection_closes_total", face="pages", code="1013") == 1
        assert value(samples, "roomhub_connection_closes_total", face="actions", code="1013") == 1
        assert value(samples, "roomhub_connections", face="pages") == 1
        await page.close()
