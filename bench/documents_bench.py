"""Documents benchmark: roomhub's /yjs against pycrdt-websocket 0.16.5, same load, same run.

Both servers run as subprocesses on loopback, on uvicorn, each with an SQLite
store; one Node load generator (``documents_load.mjs``, y-websocket wire
protocol, yjs documents) drives both. Scenarios:

- throughput: R rooms x C clients, each keeping ``window`` edits in flight
  (closed loop on its own echo): updates delivered to other clients per
  second, end-to-end latency p50/p99 (send -> receipt by another client);
- paced: the same rooms at ``rate`` edits/s per client: latency p50/p99;
- idle: N connected, synced, idle clients: server RSS growth per connection;
- history: a document with H updates of history, cold (its room unloaded):
  time for a new client to be synced (median of 9: single joins vary by
  several ms on a shared machine), content checked; and the part of it from
  the socket's opening to synced (sync step 1 sent, the whole document
  loaded by the server, sync step 2 received and applied). The rest is the
  WebSocket handshake, mostly the Node client's own work (2-3 ms against a
  bare asyncio server, ``documents_floor.py``).

Run: ``python bench/documents_bench.py [--quick]`` (needs ``pip install
'.[bench]'`` and ``scripts/setup-interop.sh``). Prints a table, then JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from _common import HubProcess, ServerProcess

HERE = Path(__file__).resolve().parent
SCENARIOS = ("throughput", "paced", "idle", "history")
HUB_TOML = (
    "[server.limits]\nmax_connections = 20000\nmax_clients_per_room = 500\n"
    '[documents]\nstore = "sqlite"\ngrace_period = 0\n'
)
"""roomhub as benchmarked: SQLite store, rooms evicted as soon as their last client leaves."""


class PeerProcess(ServerProcess):
    """pycrdt-websocket 0.16.5 on uvicorn (``documents_peer_server.py``), SQLite store in its workdir."""

    name = "pycrdt-websocket"

    def argv(self) -> list[str]:
        return [sys.executable, str(HERE / "documents_peer_server.py"), str(self.port),
                str(self.workdir / "ystore.db")]


def server_process(name: str) -> ServerProcess:
    """A fresh server (and database) for one scenario: ``"roomhub"`` or ``"pycrdt-websocket"``."""
    return HubProcess(HUB_TOML) if name == "roomhub" else PeerProcess()


def run_load(port: int, mode: str, server: psutil.Process, **options: Any) -> dict[str, Any]:
    opts = {"url": f"ws://127.0.0.1:{port}/yjs", "mode": mode, "budget": 150, **options}
    gen = subprocess.Popen(
        ["node", str(HERE / "documents_load.mjs"), json.dumps(opts)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=HERE,
    )
    assert gen.stdout is not None and gen.stdin is not None
    result: dict[str, Any] = {}
    base_rss = server.memory_info().rss
    cpu0 = server.cpu_times()
    t0 = time.monotonic()
    for line in gen.stdout:
        event = json.loads(line)
        if event.get("event") == "ready":  # idle mode: everyone is connected and synced
            time.sleep(2)
            rss = server.memory_info().rss
            result["rss_per_connection_bytes"] = (rss - base_rss) / event["connected"]
            result["rss_mb"] = rss / 2**20
            gen.stdin.write(b"stop\n")
            gen.stdin.flush()
        elif event.get("event") == "result":
            result.update(event)
    gen.wait(30)
    cpu1 = server.cpu_times()
    result["server_cpu_share"] = ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / (
        time.monotonic() - t0
    )
    result.pop("event", None)
    return result


def bench_server(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Every scenario against a fresh server process (and a fresh database)."""
    common = {
        "rooms": args.rooms,
        "clients": args.clients,
        "warmup": 1.0,
        "duration": args.duration,
    }
    out: dict[str, Any] = {}
    scenarios = {
        "throughput": {"window": args.window, **common},
        "paced": {"rate": args.rate, **common},
        "idle": {"rooms": args.idle // 100, "clients": 100},
        "history": {"history": args.history, "coldDelay": 1.5},
    }
    for mode in args.only:
        with server_process(name) as server:
            assert server.proc is not None and server.ps is not None
            out[mode] = run_load(server.port, mode, server.ps, **scenarios[mode])
            time.sleep(1)
            # pycrdt-websocket's server task group dies when many clients leave at once
            out[mode]["server_alive_after"] = server.proc.poll() is None
        print(f"{name} {mode}: {json.dumps(out[mode])}", file=sys.stderr, flush=True)
    return out


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--window", type=int, default=4, help="edits in flight per client")
    parser.add_argument("--rate", type=float, default=25.0, help="paced edits/s per client")
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("--idle", type=int, default=2000, help="idle clients (multiple of 100)")
    parser.add_argument("--history", type=int, default=10000, help="updates of history")
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument(
        "--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS), metavar="SCENARIO",
        help=f"run only these scenarios (of {', '.join(SCENARIOS)})",
    )
    args = parser.parse_args()
    if args.quick:
        args.duration, args.idle, args.history = 2.0, 200, 1000
    results = {name: bench_server(name, args) for name in ("roomhub", "pycrdt-websocket")}
    r, q = results["roomhub"], results["pycrdt-websocket"]

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 4) if a is not None and b else None

    metrics = [  # (scenario, key, label, scale, better)
        ("throughput", "delivered_per_s", "throughput: delivered updates/s", 1, "higher"),
        ("throughput", "p50_ms", "throughput: latency p50 (ms)", 1, "lower"),
        ("throughput", "p99_ms", "throughput: latency p99 (ms)", 1, "lower"),
        ("paced", "p50_ms", f"paced {args.rate:g}/s: latency p50 (ms)", 1, "lower"),
        ("paced", "p99_ms", f"paced {args.rate:g}/s: latency p99 (ms)", 1, "lower"),
        ("idle", "rss_per_connection_bytes", f"idle x{args.idle}: RSS per connection (KiB)", 1024,
         "lower"),
        ("history", "join_ms_median", f"join {args.history} updates history (ms)", 1, "lower"),
        ("history", "sync_ms_median", "  of which open -> synced (ms)", 1, "lower"),
    ]
    rows = [
        (label, r[mode][key] / scale, q[mode][key] / scale, better)
        for mode, key, label, scale, better in metrics
        if mode in r and mode in q
    ]
    print(f"\n{'metric':44} {'roomhub':>12} {'pycrdt-ws':>12} {'ratio':>8}")
    for label, a, b, better in rows:
        print(
            f"{label:44} {a:12.2f} {b:12.2f} {_num(ratio(a, b)):>8}"
            f"  ({better} is better)"
        )
    if "history" in r and "history" in q:
        print(
            f"history content complete: roomhub={r['history']['complete']} "
            f"pycrdt-websocket={q['history']['complete']}"
        )
    summary = {
        label: {"roomhub": a, "pycrdt-websocket": b, "ratio": ratio(a, b)}
        for label, a, b, _ in rows
    }
    print(json.dumps({"options": vars(args), "summary": summary, "raw": results}, indent=1))


if __name__ == "__main__":
    main()
