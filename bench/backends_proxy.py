"""Backends: the hub's proxy against the same backend reached directly, in the same run.

1. Small JSON endpoint (``GET /hello-world`` of the shipped demo backend):
   requests per second and latency percentiles with ``--clients`` concurrent
   keep-alive clients for ``--seconds``, directly on the backend's Unix
   socket versus through ``/backends/...`` on the hub's TCP port.
2. A ``--mib`` MiB body: upload (``POST /digest``) and download
   (``GET /bytes/N``) throughput, direct versus proxied.
3. Time to first response of an already-built venv backend in a new
   partition (an on-demand start through the proxy: build reused, process
   started, readiness probe, first answer), ``--starts`` times.

Both paths reach the same instance (partition ``bench``): directly on its
Unix socket, or through the hub, whose HTTP protocol serves ``/backends/``
requests without ASGI (:mod:`roomhub.backends.exchange`) over its keep-alive
pool of connections to the instance (:mod:`roomhub.backends.upstream`). Direct and proxied runs alternate for
``--rounds`` rounds and the table gives medians (the ratio column is the
median of each round's own ratio), so that a burst of load from other
programs on the machine does not favour one side. The load generator is a
small keep-alive HTTP/1.1 client on asyncio streams (uvloop when present),
in this process, apart from the hub and the backend: it costs about 25 us of
CPU per request, little next to the servers (``wrk`` would cost less, but
cannot reach the backend's Unix socket). All processes share this machine's
cores, which the JSON line records; through the proxy three processes (load
generator, hub, backend) share them, directly only two. The hub's own CPU per
proxied request and per MiB (the last rows) varies much less with the load
other programs put on the machine than the ratios do.

    python bench/backends_proxy.py [--clients 50] [--seconds 5] [--mib 100] [--starts 5] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from _common import HubProcess, machine, percentile, report, run

DEMO = "roomhub_demo_backend"
MiB = 1024 * 1024


class KeepAliveClient:
    """One HTTP/1.1 keep-alive connection issuing GETs with fixed headers (content-length bodies only)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> None:
        self.reader, self.writer, self.request = reader, writer, request

    async def get(self) -> int:
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        return status


async def open_client(target: dict[str, Any], path: str, headers: dict[str, str]) -> KeepAliveClient:
    if "uds" in target:
        reader, writer = await asyncio.open_unix_connection(target["uds"])
    else:
        reader, writer = await asyncio.open_connection("127.0.0.1", target["port"])
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = f"GET {path} HTTP/1.1\r\nhost: localhost\r\n{extra}\r\n".encode()
    return KeepAliveClient(reader, writer, request)


async def load(target: dict[str, Any], path: str, headers: dict[str, str], clients: int,
               seconds: float) -> dict[str, float]:
    conns = [await open_client(target, path, headers) for _ in range(clients)]
    for conn in conns:  # warm-up
        assert await conn.get() == 200
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def worker(conn: KeepAliveClient) -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            if await conn.get() != 200:
                errors += 1
            latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - began
    for conn in conns:
        conn.writer.close()
    return {"rps": len(latencies) / elapsed, "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000, "requests": len(latencies), "errors": errors}


async def body_throughput(client: httpx.AsyncClient, base: str, headers: dict[str, str],
                          size: int, cpu: Callable[[], float] = lambda: 0.0) -> dict[str, float]:
    """Upload and download ``size`` bytes; ``cpu()`` (seconds) is read around each, per MiB in ms."""
    block = b"\xab" * MiB

    async def upload():
        for _ in range(size // MiB):
            yield block

    cpu_before, started = cpu(), time.perf_counter()
    r = await client.post(f"{base}/digest", content=upload(), headers=headers)
    up = time.perf_counter() - started
    up_cpu = cpu() - cpu_before
    assert r.json()["bytes"] == size, r.text
    cpu_before, started = cpu(), time.perf_counter()
    received = 0
    async with client.stream("GET", f"{base}/bytes/{size}", headers=headers) as response:
        async for chunk in response.aiter_raw(MiB):
            received += len(chunk)
    down = time.perf_counter() - started
    down_cpu = cpu() - cpu_before
    assert received == size
    return {"upload_MBps": size / MiB / up, "download_MBps": size / MiB / down,
            "upload_cpu_ms_per_MiB": up_cpu * 1000 / (size / MiB),
            "download_cpu_ms_per_MiB": down_cpu * 1000 / (size / MiB)}


async def first_response_times(hub: HubProcess, starts: int) -> list[float]:
    times = []
    async with httpx.AsyncClient(base_url=hub.base, timeout=120) as http:
        for i in range(starts):
            partition = f"bench-new-{i}-{time.monotonic_ns()}"
            started = time.perf_counter()
            r = await http.get(f"/backends/{DEMO}/^0.1.0/hello-world",
                               headers={"x-backends-partition": partition})
            times.append(time.perf_counter() - started)
            assert r.status_code == 200, r.text
            await http.delete(f"/api/backends/partitions/{partition}")
    return times


def median_of(rounds: list[dict[str, float]], key: str) -> float:
    return percentile([r[key] for r in rounds], 50)


async def main(args: argparse.Namespace) -> None:
    toml = "[backends]\non_demand = true\nidle_timeout = 3600\n"
    with HubProcess(toml) as hub:
        async with httpx.AsyncClient(base_url=hub.base, timeout=300) as http:
            r = await http.post("/api/backends/install", json={"modules": [DEMO], "partition": "bench"})
            r.raise_for_status()
            uid = r.json()["backends"][0]["uid"]
            instances = (await http.get("/api/backends/instances", params={"partition": "bench"})).json()
            assert [i["uid"] for i in instances] == [uid], instances  # one instance: both paths reach it
        pattern = f"roomhub-be-*/{uid[:12]}/backend.sock"
        sockets = await asyncio.to_thread(lambda: list(Path(tempfile.gettempdir()).glob(pattern)))
        assert len(sockets) == 1, sockets
        direct = {"uds": str(sockets[0])}
        proxied = {"port": hub.port}
        header = {"x-backends-partition": "bench"}
        base_path = f"/backends/{DEMO}/0.1.0"
        size = args.mib * MiB
        rounds: list[dict[str, float]] = []
        for n in range(args.rounds):
            small_direct = await load(direct, "/hello-world", {}, args.clients, args.seconds)
            hub_cpu = hub.cpu_seconds()
            small_proxy = await load(proxied, f"{base_path}/hello-world", header, args.clients, args.seconds)
            hub_us = (hub.cpu_seconds() - hub_cpu) * 1e6 / small_proxy["requests"]
            transport = httpx.AsyncHTTPTransport(uds=direct["uds"])
            async with httpx.AsyncClient(transport=transport, timeout=300) as c:
                big_direct = await body_throughput(c, "http://backend", {}, size)
            async with httpx.AsyncClient(timeout=300) as c:
                big_proxy = await body_throughput(c, f"{hub.base}{base_path}", header, size, hub.cpu_seconds)
            one = {
                "rps_direct": small_direct["rps"], "rps_proxy": small_proxy["rps"],
                "p50_direct": small_direct["p50_ms"], "p50_proxy": small_proxy["p50_ms"],
                "p99_direct": small_direct["p99_ms"], "p99_proxy": small_proxy["p99_ms"],
                "up_direct": big_direct["upload_MBps"], "up_proxy": big_proxy["upload_MBps"],
                "down_direct": big_direct["download_MBps"], "down_proxy": big_proxy["download_MBps"],
                "hub_us_per_request": hub_us, "hub_ms_per_MiB_up": big_proxy["upload_cpu_ms_per_MiB"],
                "hub_ms_per_MiB_down": big_proxy["download_cpu_ms_per_MiB"],
            }
            for key in ("rps", "up", "down"):
                one[f"{key}_ratio"] = one[f"{key}_proxy"] / one[f"{key}_direct"]
            rounds.append(one)
            print(f"round {n + 1}: rps {one['rps_direct']:,.0f} / {one['rps_proxy']:,.0f}, "
                  f"upload {one['up_direct']:,.0f} / {one['up_proxy']:,.0f} MB/s, "
                  f"download {one['down_direct']:,.0f} / {one['down_proxy']:,.0f} MB/s (direct / proxy)",
                  flush=True)
        starts = await first_response_times(hub, args.starts)

    def row(label: str, key: str, bar: str = "", ratio: bool = True) -> list[Any]:
        d, p = median_of(rounds, f"{key}_direct"), median_of(rounds, f"{key}_proxy")
        return [label, d, p, median_of(rounds, f"{key}_ratio") if ratio else p / d, bar]

    rows = [
        row("JSON rps", "rps", ">= 0.70"),
        row("JSON p50 ms", "p50", ratio=False),
        row("JSON p99 ms", "p99", ratio=False),
        row(f"{args.mib} MiB upload MB/s", "up", ">= 0.70"),
        row(f"{args.mib} MiB download MB/s", "down", ">= 0.70"),
        ["first response, new partition, median s", "", percentile(starts, 50), "", "< 1 s"],
        ["hub CPU per proxied JSON request, us", "", median_of(rounds, "hub_us_per_request"), "", ""],
        ["hub CPU per MiB uploaded, ms", "", median_of(rounds, "hub_ms_per_MiB_up"), "", ""],
        ["hub CPU per MiB downloaded, ms", "", median_of(rounds, "hub_ms_per_MiB_down"), "", ""],
    ]
    print(f"medians of {args.rounds} rounds (proxy/direct: the median of each round's own ratio)")
    report("backends_proxy", ["measure", "direct", "proxy", "proxy/direct", "bar"], rows, {
        "clients": args.clients, "seconds": args.seconds, "mib": args.mib, "rounds": rounds,
        "ratios": {key: median_of(rounds, f"{key}_ratio") for key in ("rps", "up", "down")},
        "first_response_s": starts, "machine": machine(),
    })


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--mib", type=int, default=100)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5, help="direct and proxy measured alternately")
    run(main(parser.parse_args()))
