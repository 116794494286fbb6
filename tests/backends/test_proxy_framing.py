"""The proxy's HTTP path (served by the hub's protocol without ASGI, over its keep-alive pool):
every framing both ways, pipelining, backpressure, broken connections on either side, the door.

One hub process and one instance of :mod:`framing_backend` serve the whole module; the backend
numbers its connections, so tests see which upstream connection carried a request.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httptools
import httpx
import psutil
import pytest
from backends_helpers import FRAMING_BACKEND, hub_config, stdlib_package

from hubtest import HubProcess, eventually, start_hub_process

MiB = 1024 * 1024
BASE = "/backends/framing/0.1.0"
PARTITION = {"x-backends-partition": "F"}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    tmp = tmp_path_factory.mktemp("framing")
    stdlib_package(tmp / "catalog", "framing", "0.1.0", server=FRAMING_BACKEND)
    process = start_hub_process(hub_config(tmp, tmp / "catalog"), tmp)
    try:
        r = httpx.post(f"{process.base}/api/backends/install",
                       json={"modules": ["framing"], "partition": "F"}, timeout=120)
        assert r.status_code == 200, r.text
        yield process
    finally:
        process.stop()


async def events(http: httpx.AsyncClient) -> dict:
    return (await http.get(f"{BASE}/events", headers=PARTITION)).json()


class RawResponses:
    """Responses read from one raw client connection, each parsed by ``httptools`` (what a client
    sees). ``methods``: those of the requests, in order (a ``HEAD`` answer has no body)."""

    def __init__(self, reader: asyncio.StreamReader, methods: list[str]) -> None:
        self.reader = reader
        self.methods = methods
        self.buffer = b""

    async def read(self) -> list[dict]:
        return [await asyncio.wait_for(self._one(method), 30) for method in self.methods]

    async def _one(self, method: str) -> dict:
        message: dict = {"headers": {}, "body": b"", "complete": False}

        class Callbacks:
            def on_header(self, name: bytes, value: bytes) -> None:
                message["headers"][name.decode().lower()] = value.decode()

            def on_headers_complete(self) -> None:
                message["status"] = parser.get_status_code()
                message["complete"] = method == "HEAD"

            def on_body(self, body: bytes) -> None:
                message["body"] += body

            def on_message_complete(self) -> None:
                message["complete"] = True

        parser = httptools.HttpResponseParser(Callbacks())
        while True:  # a byte at a time, so that the next response's bytes stay in the buffer
            while self.buffer and not message["complete"]:
                parser.feed_data(self.buffer[:1])
                self.buffer = self.buffer[1:]
            if message["complete"]:
                return message
            data = await self.reader.read(65536)
            assert data, "the connection closed before the response was complete"
            self.buffer += data


def request(method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "host: localhost", "x-backends-partition: F",
             *(f"{k}: {v}" for k, v in (headers or {}).items())]
    if body:
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def test_chunked_bodies_both_ways_and_forwarded_headers(hub: HubProcess) -> None:
    async with httpx.AsyncClient(base_url=hub.base, timeout=30) as http:
        blocks = [os.urandom(10_000 + i) for i in range(20)]

        async def chunked() -> AsyncIterator[bytes]:
            for block in blocks:
                yield block

        r = await http.post(f"{BASE}/echo", content=chunked(), headers={**PARTITION, "x-custom": "yes"})
        answer = r.json()
        assert r.status_code == 200 and answer["chunked"] is True
        assert answer["bytes"] == sum(map(len, blocks))
        assert answer["sha256"] == hashlib.sha256(b"".join(blocks)).hexdigest()
        sent = answer["headers"]
        assert sent["x-custom"] == "yes" and sent["x-backends-partition"] == "F"
        assert sent["x-forwarded-prefix"] == BASE and sent["x-forwarded-proto"] == "http"
        assert sent["x-forwarded-host"] == f"127.0.0.1:{hub.port}" and sent["x-forwarded-for"] == "127.0.0.1"
        assert "keep-alive" not in sent and sent.get("connection", "") != "keep-alive"

        r = await http.post(f"{BASE}/echo", content=b"abc" * 1000, headers=PARTITION)
        assert r.json()["chunked"] is False and r.json()["bytes"] == 3000

        r = await http.get(f"{BASE}/chunked/40", headers=PARTITION)
        assert r.status_code == 200 and r.headers["transfer-encoding"] == "chunked"
        assert r.text == "".join(f"piece-{i}\n" for i in range(40))


async def test_head_204_304_and_close_delimited_keep_the_connection_usable(hub: HubProcess) -> None:
    async with httpx.AsyncClient(base_url=hub.base, timeout=30) as http:
        r = await http.head(f"{BASE}/text", headers=PARTITION)
        assert r.status_code == 200 and r.headers["content-length"] == "11" and r.content == b""
        r = await http.get(f"{BASE}/text", headers=PARTITION)
        assert r.text == "hello world"
        for status in (204, 304):
            r = await http.get(f"{BASE}/status/{status}", headers=PARTITION)
            assert r.status_code == status and r.content == b"" and r.headers["etag"] == '"v1"'
            assert (await http.get(f"{BASE}/text", headers=PARTITION)).text == "hello world"
        r = await http.get(f"{BASE}/close-delimited", headers=PARTITION)
        assert r.text == "".join(f"line {i}\n" for i in range(5))
        assert r.headers["transfer-encoding"] == "chunked"  # re-framed: the client keeps its connection
        assert (await http.get(f"{BASE}/text", headers=PARTITION)).text == "hello world"


async def test_pipelined_requests_are_answered_in_order(hub: HubProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
    try:
        writer.write(request("GET", f"{BASE}/sleep/0.3") + request("GET", f"{BASE}/chunked/3")
                     + request("GET", "/backends/framing") + request("POST", f"{BASE}/echo", body=b"12345")
                     + request("HEAD", f"{BASE}/text") + request("GET", f"{BASE}/text"))
        done = await RawResponses(reader, ["GET", "GET", "GET", "POST", "HEAD", "GET"]).read()
        assert [r["status"] for r in done] == [200, 200, 404, 200, 200, 200]
        assert json.loads(done[0]["body"])["slept"] == 0.3
        assert done[1]["body"] == b"piece-0\npiece-1\npiece-2\n"
        assert json.loads(done[2]["body"])["error"] == "bad-backend-path"
        assert json.loads(done[3]["body"])["bytes"] == 5
        assert done[4]["headers"]["content-length"] == "11" and done[4]["body"] == b""
        assert done[5]["body"] == b"hello world"
    finally:
        writer.close()


async def test_expect_100_continue_is_answered_by_the_hub(hub: HubProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
    try:
        writer.write(request("POST", f"{BASE}/echo", {"expect": "100-continue", "content-length": "4"}))
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        assert interim.startswith(b"HTTP/1.1 100")
        writer.write(b"abcd")
        (answer,) = await RawResponses(reader, ["POST"]).read()
        body = json.loads(answer["body"])
        assert answer["status"] == 200 and body["bytes"] == 4 and "expect" not in body["headers"]
    finally:
        writer.close()


async def test_slow_reader_pauses_the_backend_and_hub_memory_stays_bounded(hub: HubProcess) -> None:
    size = 200 * MiB
    async with httpx.AsyncClient(base_url=hub.base, timeout=60) as http:
        written_before = (await events(http))["written"]
        rss_before = psutil.Process(hub.proc.pid).memory_info().rss
        reader, writer = await asyncio.open_connection("127.0.0.1", hub.port, limit=MiB)
        try:
            writer.write(request("GET", f"{BASE}/big/{size}"))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            assert head.startswith(b"HTTP/1.1 200") and f"content-length: {size}".encode() in head.lower()
            received = len(await reader.read(65536))
            await asyncio.sleep(1.5)  # the client reads nothing: socket buffers fill, the hub stops reading
            written = (await events(http))["written"] - written_before
            rss = psutil.Process(hub.proc.pid).memory_info().rss
            assert written < 48 * MiB, f"the backend wrote {written / MiB:.0f} MiB to a stalled client"
            assert rss - rss_before < 48 * MiB, (rss_before, rss)
            while received < size:
                data = await asyncio.wait_for(reader.read(MiB), 30)
                assert data
                received += len(data)
            assert received == size
        finally:
            writer.close()
        assert (await events(http))["written"] - written_before == size


async def test_backend_closing_mid_response_cuts_only_that_response(hub: HubProcess) -> None:
    async with httpx.AsyncClient(base_url=hub.base, timeout=30) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get(f"{BASE}/cut/300000", headers=PARTITION)
        r = await http.get(f"{BASE}/text", headers=PARTITION)
        assert r.status_code == 200 and r.text == "hello world"
        assert (await http.get("/api/health")).status_code == 200


async def test_client_leaving_mid_upload_closes_the_upstream_connection(hub: HubProcess) -> None:
    async with httpx.AsyncClient(base_url=hub.base, timeout=30) as http:
        _, writer = await asyncio.open_connection("127.0.0.1", hub.port)
        writer.write(request("POST", f"{BASE}/echo", {"content-length": str(10 * MiB)}))
        writer.write(b"z" * MiB)
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()  # a tenth of the body sent
        aborted = await eventually(lambda: _aborted(http))
        conn = int(aborted.split("conn=")[1].split()[0])
        assert int(aborted.split(" after ")[1].split()[0]) < 10 * MiB
        for _ in range(3):  # that connection is never handed to a later request
            r = await http.post(f"{BASE}/echo", content=b"after", headers=PARTITION)
            assert r.status_code == 200 and r.json()["conn"] != conn


async def _aborted(http: httpx.AsyncClient) -> str | None:
    return next((e for e in (await events(http))["events"] if e.startswith("upload aborted")), None)


async def test_a_reused_connection_closed_by_the_backend_is_retried_once_for_idempotent_requests(
        hub: HubProcess) -> None:
    async with httpx.AsyncClient(base_url=hub.base, timeout=30) as http:
        first = (await http.get(f"{BASE}/drop-next", headers=PARTITION)).json()["conn"]
        r = await http.get(f"{BASE}/conn", headers=PARTITION)  # lands on that connection, which drops it
        assert r.status_code == 200 and r.json()["conn"] != first
        assert f"dropped GET {BASE.removeprefix('/backends/framing/0.1.0')}/conn conn={first}" in (
            await events(http))["events"]
        second = (await http.get(f"{BASE}/drop-next", headers=PARTITION)).json()["conn"]
        r = await http.post(f"{BASE}/echo", content=b"once", headers=PARTITION)  # not idempotent
        assert r.status_code == 502 and r.json()["error"] == "backend-unreachable"
        assert f"dropped POST /echo conn={second}" in (await events(http))["events"]
        assert (await http.get(f"{BASE}/text", headers=PARTITION)).text == "hello world"


async def test_token_auth_on_the_fast_path(tmp_path: Path, hub_process) -> None:
    path = hub_config(tmp_path, tmp_path / "catalog")
    (tmp_path / "catalog").mkdir()
    path.write_text('[server.auth]\ntokens = ["s3cret-token"]\n' + path.read_text())
    proc = hub_process(path)
    url = f"{proc.base}/backends/framing/0.1.0/text"
    async with httpx.AsyncClient(timeout=30) as http:
        refused = await http.get(url, headers=PARTITION)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert refused.headers["content-type"] == "application/json"
        assert "missing token" in refused.json()["detail"]
        bad = await http.get(url, headers={**PARTITION, "authorization": "Bearer wrong"})
        assert bad.status_code == 401 and bad.json()["detail"] == "invalid token"
        # the same keep-alive connection goes on; each way of giving the token lets the request in
        # (to a backend that is not running: 404 from the proxy, past the door)
        for extra, params in (({"authorization": "Bearer s3cret-token"}, {}),
                              ({"cookie": "roomhub_token=s3cret-token"}, {}),
                              ({"origin": "https://elsewhere.example"}, {"token": "s3cret-token"})):
            r = await http.get(url, headers={**PARTITION, **extra}, params=params)
            assert r.status_code == 404 and r.json()["error"] == "backend-not-running", (extra, r.text)
