"""Documents benchmark: roomhub's /yjs against pycrdt-websocket 0.16.5 and @y/websocket-server
0.1.5 (Node), same load, same run.

The servers run one after the other as subprocesses on loopback, each with its
default persistence: roomhub with its SQLite store, pycrdt-websocket on
uvicorn with an ``SQLiteYStore``, @y/websocket-server with none (its 0.1.5
server keeps documents in memory: a join there is always warm). One Node
load generator (``documents_load.mjs``, y-websocket wire protocol, yjs
documents) drives each. Scenarios:

- throughput: R rooms x C clients, each keeping ``window`` edits in flight
  (closed loop on its own echo): updates delivered to other clients per
  second, end-to-end latency p50/p99 (send -> receipt by another client),
  and the server's CPU time per delivered update (its user + system time
  over the measured seconds only, divided by the updates delivered then);
- paced: the same rooms at ``rate`` edits/s per client: latency p50/p99, CPU
  per delivered update;
- idle: N connected, synced, idle clients: server RSS growth per connection;
- history: for each size H of ``--history``, one writer types H updates
  (64 in flight, each waiting for its echo: updates written per second)
  and, with pycrdt-websocket, stays connected until its store holds them
  all (it commits each update alone, far behind its echoes, and a room whose
  last client leaves cancels the writes still queued: the document loaded
  cold afterwards missed most of its history); then a document with H
  updates of history, cold (its room unloaded; not for Node, see above): time for a
  new client to be synced (median of 9: single joins vary by several ms on
  a shared machine), content checked; and the part of it from the socket's
  opening to synced (sync step 1 sent, the whole document loaded by the
  server, sync step 2 received and applied), and the part of that spent by the
  client applying sync step 2 to its own document (``Y.applyUpdate``: the same
  bytes, so about the same cost, whichever server sent them). The rest is the WebSocket
  handshake, mostly the Node client's own work (2-3 ms against a bare
  asyncio server, ``documents_floor.py``).

Every figure is printed for the three servers with two ratios, roomhub /
pycrdt-websocket and roomhub / Node, then the issue's bars, then JSON. The
machine's load average (before and after) is printed too: on a shared
machine the figures are indicative.

Run: ``python bench/documents_bench.py [--quick] [--peers pycrdt-websocket node]`` (needs
``pip install '.[bench]'``, ``scripts/setup-interop.sh`` and Node; the Node peer is
installed by ``npm install`` in ``bench/documents_node`` on first use).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from _common import HubProcess, ServerProcess

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "documents_node"
SCENARIOS = ("throughput", "paced", "idle", "history")
PEERS = ("pycrdt-websocket", "node")
HUB_TOML = (
    "[server.limits]\nmax_connections = 20000\nmax_clients_per_room = 500\nreceive_rate = 0\n"
    "room_receive_rate = 0\n"
    '[documents]\nstore = "sqlite"\ngrace_period = 0\n'
)
"""roomhub as benchmarked: SQLite store, rooms evicted as soon as their last client leaves, no
receive rate limit, per client or per room (the peers have none; the history's single writer
would be held to 1,000 updates/s by the default, and its room to 2,000, the writer closed with
4029 after 30 s of that: a 100,000-update history never completed)."""


class PeerProcess(ServerProcess):
    """pycrdt-websocket 0.16.5 on uvicorn (``documents_peer_server.py``), SQLite store in its workdir."""

    name = "pycrdt-websocket"

    def argv(self) -> list[str]:
        return [sys.executable, str(HERE / "documents_peer_server.py"), str(self.port),
                str(self.workdir / "ystore.db")]


class NodePeerProcess(ServerProcess):
    """@y/websocket-server 0.1.5 (``npx y-websocket``'s server), no persistence (its default)."""

    name = "node"

    def argv(self) -> list[str]:
        server = NODE_DIR / "node_modules" / "@y" / "websocket-server" / "src" / "server.js"
        # env(1) execs node: the measured process is the server itself
        return ["env", "HOST=127.0.0.1", f"PORT={self.port}", "node", str(server)]


def install_node_peer() -> None:
    """``npm install`` in ``bench/documents_node`` unless the peer is there already."""
    if (NODE_DIR / "node_modules" / "@y" / "websocket-server" / "package.json").exists():
        return
    print("installing @y/websocket-server 0.1.5 in bench/documents_node", file=sys.stderr)
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
                   cwd=NODE_DIR, check=True)


def check_pycrdt_peer() -> None:
    """Fail early, saying what to install, when pycrdt-websocket or its store is missing."""
    try:
        import pycrdt.store
        import pycrdt.websocket  # noqa: F401
    except ImportError as exc:
        raise SystemExit(f"pycrdt-websocket peer unavailable ({exc}): pip install -e '.[bench]'") from None


def server_process(name: str) -> ServerProcess:
    """A fresh server (and database) for one scenario: ``"roomhub"``, ``"pycrdt-websocket"``
    or ``"node"``."""
    if name == "roomhub":
        return HubProcess(HUB_TOML)
    return PeerProcess() if name == "pycrdt-websocket" else NodePeerProcess()


def wait_stored(db: Path, updates: int, stalled: float = 30.0) -> dict[str, Any]:
    """Wait until pycrdt-websocket's store ``db`` holds ``updates`` updates (rows of its
    ``yupdates`` table, one per update it applied), or until it grew no more for ``stalled``
    seconds; how long that took and what it held then."""
    t0 = last_growth = time.monotonic()
    stored = -1
    while True:
        with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
            count = conn.execute("SELECT count(*) FROM yupdates").fetchone()[0]
        now = time.monotonic()
        if count != stored:
            stored, last_growth = count, now
        if stored >= updates or now - last_growth > stalled:
            return {"stored_updates": stored, "store_caught_up_s": now - t0}
        time.sleep(0.5)


def start_generator(ports: list[int], mode: str, options: dict[str, Any]) -> subprocess.Popen[bytes]:
    """The load generator (``documents_load.mjs``) in ``mode`` against the servers on ``ports``
    (several: its clients spread over them round-robin), ``options`` passed on; stdin and stdout
    piped (it reports JSON events, one a line, and waits on stdin where it says so)."""
    budget = 150 + options.get("history", 0) / 100  # a long history takes a while to write and store
    urls = [f"ws://127.0.0.1:{p}/yjs" for p in ports]
    opts = {"url": urls[0], "mode": mode, "budget": budget, **options}
    if len(urls) > 1:
        opts["urls"] = urls
    return subprocess.Popen(
        ["node", str(HERE / "documents_load.mjs"), json.dumps(opts)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=HERE,
    )


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """User + system CPU seconds of ``processes``, summed."""
    return sum(float(t.user + t.system) for t in (p.cpu_times() for p in processes))


def run_load(port: int | list[int], mode: str, server: psutil.Process | list[psutil.Process], *,
             on_written: Callable[[int], dict[str, Any]] | None = None, **options: Any) -> dict[str, Any]:
    """Run the load generator in ``mode`` against the server on ``port`` (``server``: its process,
    whose CPU time is measured; ``options`` go to the generator). Several ports (hubs of a
    cluster, with their processes): clients spread over them round-robin, the CPU time summed over
    every process; RSS is the first's. With ``on_written`` (history mode), the writer stays
    connected once it wrote every update until ``on_written(updates)`` returns (what it returns
    joins the result)."""
    ports = port if isinstance(port, list) else [port]
    servers = server if isinstance(server, list) else [server]
    server = servers[0]
    if on_written is not None:
        options = {**options, "waitStored": True}
    gen = start_generator(ports, mode, options)
    assert gen.stdout is not None and gen.stdin is not None
    result: dict[str, Any] = {}
    base_rss = server.memory_info().rss
    generator = [psutil.Process(gen.pid)]
    cpu0 = cpu_seconds(servers)
    measured_cpu = 0.0
    t0 = time.monotonic()
    for line in gen.stdout:
        event = json.loads(line)
        if event.get("event") == "measuring":
            measured_cpu = cpu_seconds(servers)
            generator_cpu, measured_at = cpu_seconds(generator), time.monotonic()
        elif event.get("event") == "measured":
            measured_cpu = cpu_seconds(servers) - measured_cpu
            # how much of the machine the load generator itself took while measuring (cores)
            elapsed = time.monotonic() - measured_at
            result["generator_cpu_share"] = (cpu_seconds(generator) - generator_cpu) / elapsed
        elif event.get("event") == "ready":  # idle mode: everyone is connected and synced
            time.sleep(2)
            rss = server.memory_info().rss
            result["rss_per_connection_bytes"] = (rss - base_rss) / event["connected"]
            result["rss_mb"] = rss / 2**20
            gen.stdin.write(b"stop\n")
            gen.stdin.flush()
        elif event.get("event") == "written" and on_written is not None:
            result.update(on_written(event["updates"]))
            gen.stdin.write(b"go\n")
            gen.stdin.flush()
        elif event.get("event") == "result":
            result.update(event)
    gen.wait(30)
    result["server_cpu_share"] = (cpu_seconds(servers) - cpu0) / (time.monotonic() - t0)
    if result.get("delivered"):
        result["cpu_us_per_delivered"] = measured_cpu / result["delivered"] * 1e6
    result.pop("event", None)
    return result


def run_load_split(ports: list[int], mode: str, servers: list[psutil.Process], generators: int,
                   **options: Any) -> dict[str, Any]:
    """:func:`run_load`'s ``throughput`` or ``paced`` mode with the rooms split over ``generators``
    load generator processes running at once (one Node process saturates at about one core).

    Each takes a contiguous slice of the rooms, with the room names and client ids one generator
    would give them (so each client goes to the same hub). Each says when its clients are
    connected; once all are, all are told to go, so their warm-ups and measured seconds coincide.
    Combined: updates delivered (and per second) summed; latency p50/p99 over every generator's
    samples (their histograms merged: to 0.01 ms); the generators' cores summed (each over its own
    measured seconds); the servers' CPU time from the first generator's ``measuring`` to the last's
    ``measured``, per update delivered (``measured_s``: that window; ``measuring_spread_ms``: how
    far apart the generators started measuring).
    """
    if mode not in ("throughput", "paced"):
        raise ValueError(f"only throughput and paced runs split over generators, not {mode}")
    rooms = options["rooms"]
    if not 1 <= generators <= rooms:
        raise ValueError(f"{generators} generators for {rooms} rooms")
    slices, first = [], 0
    for g in range(generators):  # (first room, rooms): sizes differing by one at most
        count = rooms // generators + (g < rooms % generators)
        slices.append((first, count))
        first += count
    gens = [start_generator(ports, mode, {**options, "rooms": count, "firstRoom": first, "gate": True,
                                          "histogram": True})
            for first, count in slices]
    events: queue.Queue[tuple[int, dict[str, Any] | None]] = queue.Queue()

    def read(index: int, gen: subprocess.Popen[bytes]) -> None:
        assert gen.stdout is not None
        try:
            for line in gen.stdout:
                events.put((index, json.loads(line)))
        finally:
            events.put((index, None))  # its end (or a line that is no JSON: raised in this thread)

    for index, gen in enumerate(gens):
        threading.Thread(target=read, args=(index, gen), daemon=True).start()
    processes = [psutil.Process(gen.pid) for gen in gens]
    results: list[dict[str, Any]] = [{} for _ in gens]
    shares = [0.0] * generators  # each generator's cores over its measured seconds
    started: dict[int, tuple[float, float]] = {}  # generator -> (its CPU seconds, time) at measuring
    connected = finished = ended = 0
    window: dict[str, float] = {}
    cpu0, t0 = cpu_seconds(servers), time.monotonic()
    while ended < generators:
        index, event = events.get()
        kind = None if event is None else event.get("event")
        if event is None:
            ended += 1
            if connected < generators:  # it failed before the start: the others would wait for it
                for gen in gens:
                    gen.kill()
        elif kind == "connected":
            connected += 1
            if connected == generators:  # everyone connected: go
                for gen in gens:
                    assert gen.stdin is not None
                    gen.stdin.write(b"go\n")
                    gen.stdin.flush()
        elif kind == "measuring":
            now = time.monotonic()
            if not started:
                window.update(cpu=cpu_seconds(servers), start=now)
            window["last_start"] = now
            started[index] = (cpu_seconds([processes[index]]), now)
        elif kind == "measured":
            cpu, at = started[index]
            shares[index] = (cpu_seconds([processes[index]]) - cpu) / (time.monotonic() - at)
            finished += 1
            if finished == generators:
                window.update(cpu=cpu_seconds(servers) - window["cpu"], end=time.monotonic())
        elif kind == "result":
            results[index] = event
    for gen in gens:
        gen.wait(30)
    failed = [gen.returncode for gen in gens if gen.returncode]
    reported = sum(1 for r in results if r)
    if failed or finished < generators or reported < generators:
        raise RuntimeError(f"load generators failed (exit codes {failed}): {finished} of {generators} "
                           f"measured, {reported} reported")
    histogram: Counter[int] = Counter()
    for result in results:
        for bucket, count in result.get("latency_hist", []):
            histogram[bucket] += count
    bucket_ms = results[0].get("latency_hist_ms", 0.01)
    delivered = sum(r.get("delivered", 0) for r in results)
    return {
        "generators": generators,
        "join_all_ms": max(r.get("join_all_ms", 0) for r in results),
        "unsynced": sum(r.get("unsynced", 0) for r in results),
        "delivered": delivered,
        "measured_s": window["end"] - window["start"],
        "measuring_spread_ms": (window["last_start"] - window["start"]) * 1000,
        "delivered_per_s": sum(r.get("delivered_per_s", 0) for r in results),
        "p50_ms": histogram_percentile(histogram, 50, bucket_ms),
        "p99_ms": histogram_percentile(histogram, 99, bucket_ms),
        "samples": sum(histogram.values()),
        "generator_cpu_share": sum(shares),
        "per_generator": [{"rooms": count, "delivered_per_s": r.get("delivered_per_s"),
                           "p50_ms": r.get("p50_ms"), "p99_ms": r.get("p99_ms"), "cores": share}
                          for (_, count), r, share in zip(slices, results, shares, strict=True)],
        "server_cpu_share": (cpu_seconds(servers) - cpu0) / (time.monotonic() - t0),
        **({"cpu_us_per_delivered": window["cpu"] / delivered * 1e6} if delivered else {}),
    }


def histogram_percentile(histogram: Counter[int], p: float, bucket_ms: float) -> float | None:
    """The ``p``-th percentile (ms, the bucket's lower bound) of latencies counted in buckets of
    ``bucket_ms``; the sample the load generator's own percentile picks (index ``floor(n * p / 100)``)."""
    n = sum(histogram.values())
    if not n:
        return None
    rank = min(n - 1, int(n * p / 100))
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen > rank:
            return round(bucket * bucket_ms, 6)
    raise AssertionError("unreachable")


def bench_server(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Every scenario against a fresh server process (and a fresh database)."""
    common = {
        "rooms": args.rooms,
        "clients": args.clients,
        "warmup": 1.0,
        "duration": args.duration,
    }
    out: dict[str, Any] = {}
    runs: list[tuple[str, str, dict[str, Any]]] = []  # (key in out, load generator mode, options)
    for mode in args.only:
        if mode == "throughput":
            runs.append((mode, mode, {"window": args.window, **common}))
        elif mode == "paced":
            runs.append((mode, mode, {"rate": args.rate, **common}))
        elif mode == "idle":
            runs.append((mode, mode, {"rooms": args.idle // 100, "clients": 100}))
        else:
            runs += [(f"history{h}", mode, {"history": h, "coldDelay": 1.5}) for h in args.history]
    for key, mode, options in runs:
        with server_process(name) as server:
            assert server.proc is not None and server.ps is not None
            if mode == "history" and isinstance(server, PeerProcess):
                # Its store commits each update alone (and checkpoints every 100), far behind the
                # echoes; a room whose last client leaves is stopped with the writes still queued
                # cancelled, so the writer waits until the store has them all.
                db = server.workdir / "ystore.db"
                options = {**options, "on_written": lambda n, db=db: wait_stored(db, n)}
            out[key] = run_load(server.port, mode, server.ps, **options)
            time.sleep(1)
            # pycrdt-websocket's server task group dies when many clients leave at once
            out[key]["server_alive_after"] = server.proc.poll() is None
        print(f"{name} {key}: {json.dumps(out[key])}", file=sys.stderr, flush=True)
    return out


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a is not None and b else None


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--window", type=int, default=4, help="edits in flight per client")
    parser.add_argument("--rate", type=float, default=25.0, help="paced edits/s per client")
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("--idle", type=int, default=2000, help="idle clients (multiple of 100)")
    parser.add_argument("--history", type=int, nargs="+", default=[10000, 100000],
                        help="updates of history (one history scenario per size)")
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument(
        "--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS), metavar="SCENARIO",
        help=f"run only these scenarios (of {', '.join(SCENARIOS)})",
    )
    parser.add_argument("--peers", nargs="+", choices=PEERS, default=list(PEERS), metavar="PEER",
                        help=f"peers to run against (of {', '.join(PEERS)})")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.idle, args.history = 2.0, 200, [1000]
    if "pycrdt-websocket" in args.peers:
        check_pycrdt_peer()
    if "node" in args.peers:
        install_node_peer()
    load_before = load_average()
    servers = ["roomhub", *args.peers]
    results = {name: bench_server(name, args) for name in servers}
    load_after = load_average()

    metrics = [  # (scenario, key, label, scale, better)
        ("throughput", "delivered_per_s", "throughput: delivered updates/s", 1, "higher"),
        ("throughput", "cpu_us_per_delivered", "throughput: server CPU us/delivered", 1, "lower"),
        ("throughput", "p50_ms", "throughput: latency p50 (ms)", 1, "lower"),
        ("throughput", "p99_ms", "throughput: latency p99 (ms)", 1, "lower"),
        ("paced", "cpu_us_per_delivered", f"paced {args.rate:g}/s: server CPU us/delivered", 1,
         "lower"),
        ("paced", "p50_ms", f"paced {args.rate:g}/s: latency p50 (ms)", 1, "lower"),
        ("paced", "p99_ms", f"paced {args.rate:g}/s: latency p99 (ms)", 1, "lower"),
        ("idle", "rss_per_connection_bytes", f"idle x{args.idle}: RSS per connection (KiB)", 1024,
         "lower"),
    ]
    for h in args.history:
        metrics += [
            (f"history{h}", "written_per_s", f"history {h}: updates written/s (echoed)", 1,
             "higher"),
            (f"history{h}", "join_ms_median", f"join {h} updates history p50 (ms)", 1, "lower"),
            (f"history{h}", "sync_ms_median", "  of which open -> synced (ms)", 1, "lower"),
            (f"history{h}", "apply_ms_median", "    of which the client applying it (ms)", 1,
             "lower"),
        ]

    def value(name: str, mode: str, key: str, scale: float) -> float | None:
        found = results[name].get(mode, {}).get(key)
        return None if found is None else found / scale

    rows = [
        (mode, key, label, {name: value(name, mode, key, scale) for name in servers}, better)
        for mode, key, label, scale, better in metrics
        if mode in results["roomhub"]
    ]
    head = f"{'metric':42}" + "".join(f" {name[:12]:>12}" for name in servers)
    head += "".join(f" {'rh/' + name[:6]:>10}" for name in args.peers)
    print(f"\nload average (1, 5, 15 min) before: {load_before}, after: {load_after}")
    print(head)
    for _, _, label, values, better in rows:
        line = f"{label:42}" + "".join(f" {_num(values[name]):>12}" for name in servers)
        line += "".join(f" {_num(ratio(values['roomhub'], values[name])):>10}" for name in args.peers)
        print(f"{line}  ({better} is better)")
    for h in (h for h in args.history if f"history{h}" in results["roomhub"]):
        complete = {name: results[name].get(f"history{h}", {}).get("complete") for name in servers}
        print(f"history {h} content complete: {complete}")
    ran = results["roomhub"]  # bars of the scenarios run; a peer's missing figure shows n/a
    bars = []
    if "node" in args.peers:
        for mode in ("throughput", "paced"):
            if mode in ran:
                r = ratio(value("roomhub", mode, "cpu_us_per_delivered", 1),
                          value("node", mode, "cpu_us_per_delivered", 1))
                bars.append((f"{mode}: CPU per delivered update <= 0.5x Node's", r,
                             r is not None and r <= 0.5))
    if "pycrdt-websocket" in args.peers:
        for h in (h for h in args.history if f"history{h}" in ran):  # socket open to synced
            r = ratio(value("roomhub", f"history{h}", "sync_ms_median", 1),
                      value("pycrdt-websocket", f"history{h}", "sync_ms_median", 1))
            bars.append((f"join {h} open->synced p50 <= 0.5x pycrdt-websocket's", r,
                         r is not None and r <= 0.5))
    if "idle" in ran:
        idle = value("roomhub", "idle", "rss_per_connection_bytes", 1024)
        bars.append(("idle memory per connection <= 8 KiB", idle, idle is not None and idle <= 8))
    if "paced" in ran:
        p99 = value("roomhub", "paced", "p99_ms", 1)
        bars.append((f"p99 at {args.rate:g}/s per client < 10 ms", p99, p99 is not None and p99 < 10))
    print("\nbars:")
    for label, figure, met in bars:
        print(f"  {label:48} {_num(figure):>10}  {'met' if met else 'NOT met'}")
    # keyed by scenario and figure: the indented labels of the history sizes repeat
    summary = {
        f"{mode}: {key}": {
            "label": label.strip(), **values,
            **{f"ratio_{name}": ratio(values["roomhub"], values[name]) for name in args.peers},
        }
        for mode, key, label, values, _ in rows
    }
    print(json.dumps({"options": vars(args), "load_average": [load_before, load_after],
                      "summary": summary, "raw": results}, indent=1))


if __name__ == "__main__":
    main()
