"""Actions benchmark: roomhub's /actions against python-socketio 5 on uvicorn, in the same run.

    python bench/actions_bench.py [--clients 50] [--duration 5] [--broadcast-clients 200]

Measures, for each server, calls per second and p50/p99 latency with ``--clients`` concurrent
clients each making one call after the other (``echo``: one data frame; ``stream``: ten), then
the messages per second delivered when one broadcast reaches ``--broadcast-clients`` clients.
Every server runs under uvicorn in its own process (one worker); the cases are measured in
``--rounds`` interleaved windows (roomhub, python-socketio, baseline, again...) so that the
load of a shared machine hits all alike; the server's own CPU time per call is reported too,
the figure least sensitive to that load. The load generator is one process using the
``websockets`` client on uvloop, speaking each server's wire protocol itself (Igor's JSON
shapes; Engine.IO 4 / Socket.IO 5 over a WebSocket) with the same minimal parsing, so that the
client costs the same for every server. The Igor server is not on PyPI: in its place a bare
Starlette WebSocket speaking Igor's shapes (``baseline``) shows the floor of the cost.
Prints a table, the ratios to python-socketio, and the JSON of every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import websockets
from _common import hub_argv

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (from /proc; 0 where unavailable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def server(kind: str, workdir: Path) -> Iterator[tuple[int, int]]:
    """Start one server in its own process; yield its port and pid; stop it."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{SRC}"}
    if kind == "roomhub":
        config = workdir / "roomhub.toml"
        config.write_text(
            f'[server]\nlog_level = "warning"\n\n[actions]\napi = "actions_peers:API"\n'
            f'pythonpath = ["{HERE}"]\n'
        )
        args = hub_argv(config, port, workdir / "data")
    else:
        app = {
            "python-socketio": "actions_peers:sio_app",
            "baseline": "actions_peers:baseline_app",
        }[kind]
        args = [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--ws-ping-interval",
            "600",
        ]
    log = open(workdir / f"{kind}.log", "wb")
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{kind} did not start: {(workdir / f'{kind}.log').read_text()}")
            time.sleep(0.05)
        yield port, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


# -- wire protocols, as the load generator speaks them ------------------------------------------


class Igor:
    """Igor's shapes; roomhub's own clients ask for a session frame first (the baseline has none)."""

    def __init__(self, welcome: bool) -> None:
        self.welcome = welcome
        self.path = "/actions?roomhub=1" if welcome else "/actions"

    async def setup(self, ws: Any) -> None:
        if self.welcome:
            await ws.recv()

    async def call(self, ws: Any, n: int, action: str, data: Any) -> int:
        # Minimal parsing, as for Socket.IO below: the stream id and the frame kind by substring.
        head = f'{{"streamId":"{n}",'
        await ws.send(head + f'"action":"{action}","data":{json.dumps(data)}}}')
        frames = 0
        while True:
            text = await ws.recv()
            if not text.startswith(head):
                continue
            if text.endswith('"close":true}'):
                return frames
            frames += text.startswith('"data":', len(head))

    def is_broadcast(self, text: str) -> bool:
        return '"action":"b"' in text


class SocketIO:
    """Engine.IO 4 + Socket.IO 5 over a WebSocket: events with acks (``42<id>``, ``43<id>``)."""

    path = "/socket.io/?EIO=4&transport=websocket"

    async def setup(self, ws: Any) -> None:
        assert (await ws.recv()).startswith("0")
        await ws.send("40")
        assert (await ws.recv()).startswith("40")

    async def call(self, ws: Any, n: int, action: str, data: Any) -> int:
        ack = f"43{n}["
        await ws.send(f"42{n}" + json.dumps([action, data]))
        frames = 0
        while True:
            text = await ws.recv()
            if text == "2":
                await ws.send("3")
            elif text.startswith(ack):
                return frames + (action == "echo")
            elif text.startswith("42"):
                frames += 1

    def is_broadcast(self, text: str) -> bool:
        return text.startswith('42["b"')


PROTOCOLS = {
    "roomhub": Igor(welcome=True),
    "python-socketio": SocketIO(),
    "baseline": Igor(welcome=False),
}


# -- measurements ---------------------------------------------------------------------------------


@dataclass
class CallResult:
    calls_per_s: float
    frames_per_s: float
    p50_ms: float
    p99_ms: float
    calls: int
    errors: int
    server_cpu_us_per_call: float


@dataclass
class Sample:
    """Raw figures of one measured window (several windows are merged into a CallResult)."""

    latencies: list[float]
    frames: int
    errors: int
    cpu: float
    seconds: float


async def measure_calls(
    kind: str, port: int, pid: int, action: str, clients: int, duration: float, warmup: float
) -> Sample:
    proto = PROTOCOLS[kind]
    data = {"text": "hello", "n": 42} if action == "echo" else None
    sockets = []
    for _ in range(clients):
        ws = await websockets.connect(
            f"ws://127.0.0.1:{port}{proto.path}",
            max_size=None,
            compression=None,
            ping_interval=None,
        )
        await proto.setup(ws)
        sockets.append(ws)
    latencies: list[float] = []
    frames = 0
    errors = 0
    loop = asyncio.get_running_loop()
    start = loop.time() + warmup
    stop = start + duration

    async def run(ws: Any) -> None:
        nonlocal frames, errors
        n = 0
        while (now := loop.time()) < stop:
            n += 1
            t0 = time.perf_counter()
            try:
                got = await proto.call(ws, n, action, data)
            except websockets.ConnectionClosed:
                errors += 1
                return
            if now >= start:
                latencies.append(time.perf_counter() - t0)
                frames += got

    async def cpu_window() -> float:
        await asyncio.sleep(start - loop.time())
        before = cpu_seconds(pid)
        await asyncio.sleep(stop - loop.time())
        return cpu_seconds(pid) - before

    cpu, *_ = await asyncio.gather(cpu_window(), *(run(ws) for ws in sockets))
    await asyncio.gather(*(ws.close() for ws in sockets))
    return Sample(latencies, frames, errors, cpu, duration)


def merge(samples: list[Sample]) -> CallResult:
    latencies = sorted(x for s in samples for x in s.latencies)
    seconds = sum(s.seconds for s in samples)
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return CallResult(
        len(latencies) / seconds,
        sum(s.frames for s in samples) / seconds,
        q[49] * 1000,
        q[98] * 1000,
        len(latencies),
        sum(s.errors for s in samples),
        sum(s.cpu for s in samples) / max(1, len(latencies)) * 1e6,
    )


async def measure_broadcast(kind: str, port: int, pid: int, clients: int, messages: int) -> dict[str, Any]:
    proto = PROTOCOLS[kind]
    sockets = []
    for _ in range(clients):
        ws = await websockets.connect(
            f"ws://127.0.0.1:{port}{proto.path}",
            max_size=None,
            compression=None,
            ping_interval=None,
            max_queue=None,
        )
        await proto.setup(ws)
        sockets.append(ws)
    counts = [0] * clients
    first = [0.0] * clients
    last = [0.0] * clients

    async def receive(i: int, ws: Any) -> None:
        with contextlib.suppress(websockets.ConnectionClosed, TimeoutError):
            while counts[i] < messages:
                text = await asyncio.wait_for(ws.recv(), 30)
                if proto.is_broadcast(text):
                    if counts[i] == 0:
                        first[i] = time.perf_counter()
                    counts[i] += 1
                    last[i] = time.perf_counter()
                elif text == "2":
                    await ws.send("3")

    trigger = await websockets.connect(f"ws://127.0.0.1:{port}{proto.path}", compression=None)
    await proto.setup(trigger)
    receivers = [asyncio.create_task(receive(i, ws)) for i, ws in enumerate(sockets)]
    cpu_before = cpu_seconds(pid)
    started = time.perf_counter()
    await proto.call(trigger, 1, "blast", messages)
    await asyncio.gather(*receivers)
    cpu = cpu_seconds(pid) - cpu_before
    end = max(last)
    delivered = sum(counts)
    await asyncio.gather(*(ws.close() for ws in [*sockets, trigger]))
    return {
        "clients": clients,
        "messages": messages,
        "delivered": delivered,
        "complete_clients": sum(c == messages for c in counts),
        "seconds": end - started,
        "delivered_per_s": delivered / (end - started) if end > started else 0.0,
        "server_cpu_us_per_delivery": cpu / max(1, delivered) * 1e6,
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    """Every server runs at once (an idle one costs nothing); the cases are measured in
    interleaved rounds so that a change of load on a shared machine hits every server alike."""
    results: dict[str, Any] = {kind: {} for kind in args.servers}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        running = {}
        for kind in args.servers:
            work = Path(tmp) / kind
            work.mkdir()
            running[kind] = stack.enter_context(server(kind, work))
        window = args.duration / args.rounds
        for action in ("echo", "stream"):
            samples: dict[str, list[Sample]] = {kind: [] for kind in args.servers}
            for _ in range(args.rounds):
                for kind, (port, pid) in running.items():
                    samples[kind].append(
                        await measure_calls(kind, port, pid, action, args.clients, window, args.warmup)
                    )
            for kind in args.servers:
                r = merge(samples[kind])
                results[kind][action] = r.__dict__
                print(
                    f"  {kind:16} {action:6} {r.calls_per_s:9.0f} calls/s"
                    f"  p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:6.2f} ms"
                    f"  server CPU {r.server_cpu_us_per_call:5.0f} us/call"
                    f"  errors {r.errors}",
                    file=sys.stderr,
                )
        for kind, (port, pid) in running.items():
            if kind == "baseline":
                continue
            b = await measure_broadcast(kind, port, pid, args.broadcast_clients, args.broadcast_messages)
            results[kind]["broadcast"] = b
            print(
                f"  {kind:16} broadcast {b['delivered_per_s']:9.0f} msgs/s delivered "
                f"({b['complete_clients']}/{b['clients']} clients complete)",
                file=sys.stderr,
            )
    return results


def table(results: dict[str, Any], args: argparse.Namespace) -> str:
    ref = results.get("python-socketio")
    lines = [
        f"actions benchmark: {args.clients} concurrent clients, {args.duration:g} s per case, "
        f"{os.cpu_count()} CPUs shared by servers and load generator",
        "",
        f"{'server':16} {'case':7} {'calls/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'cpu us/call':>11}"
        f" {'x sio calls/s':>13} {'x sio p99':>9}",
    ]
    for kind, entry in results.items():
        for action in ("echo", "stream"):
            r = entry[action]
            ratio = r["calls_per_s"] / ref[action]["calls_per_s"] if ref else float("nan")
            p99 = r["p99_ms"] / ref[action]["p99_ms"] if ref else float("nan")
            lines.append(
                f"{kind:16} {action:7} {r['calls_per_s']:9.0f} {r['p50_ms']:7.2f} "
                f"{r['p99_ms']:7.2f} {r['server_cpu_us_per_call']:11.0f} {ratio:13.2f} {p99:9.2f}"
            )
    lines += [
        "",
        f"broadcast: one message to {args.broadcast_clients} clients, {args.broadcast_messages} messages",
        f"{'server':16} {'delivered/s':>12} {'complete':>9} {'cpu us/msg':>10} {'x sio':>6}",
    ]
    for kind, entry in results.items():
        if "broadcast" in entry:
            b = entry["broadcast"]
            ratio = (
                b["delivered_per_s"] / ref["broadcast"]["delivered_per_s"]
                if ref and "broadcast" in ref
                else float("nan")
            )
            lines.append(
                f"{kind:16} {b['delivered_per_s']:12.0f} "
                f"{b['complete_clients']:>4}/{b['clients']:<4} "
                f"{b['server_cpu_us_per_delivery']:10.1f} {ratio:6.2f}"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=5.0, help="Seconds measured per case.")
    parser.add_argument("--warmup", type=float, default=0.5, help="Seconds before each window.")
    parser.add_argument("--rounds", type=int, default=3, help="Interleaved windows per server and case.")
    parser.add_argument("--broadcast-clients", type=int, default=200)
    parser.add_argument("--broadcast-messages", type=int, default=500)
    parser.add_argument(
        "--servers",
        nargs="+",
        default=["roomhub", "python-socketio", "baseline"],
        choices=["roomhub", "python-socketio", "baseline"],
    )
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    results = asyncio.run(bench(args))
    print(table(results, args))
    summary = {"bench": "actions", "clients": args.clients, "duration": args.duration}
    print(json.dumps({**summary, "results": results}))


if __name__ == "__main__":
    main()
