"""Fairness: a terminal's echo in one room while document clients flood another room.

One hub (the real command line, SQLite document store) serves a page with an
``always`` executor running ``cat`` and ``/yjs``. A pages client in room
``echo`` sends a line to ``cat``'s stdin and waits for it to come back in an
``output`` frame: that round trip is one sample. The samples are taken twice
in one run: quiet, then while ``--flooders`` document clients (separate
processes, pycrdt updates as y-websocket frames over ``websockets``, each in
its own document room, synced as a y-websocket client is) send one-character
updates as fast as their socket takes them. The figure that matters is p99
flooded / p99 quiet (target: at most 3).

``--hub-src DIR`` runs the hub from another source tree (e.g. a checkout of an
older commit) to compare before and after a change in the same conditions.
The flood clients report how many updates they sent, and how their
connection ended if the hub closed it.

Run: ``python bench/fairness_bench.py`` (~30-60 s on a 2-core machine).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    HubProcess,
    log_problems,
    loop_name,
    machine,
    page_config,
    percentile,
    print_log_problems,
    report,
    run,
)


def hub_toml(limits: dict[str, Any], store: str) -> str:
    """The benchmarked hub: page ``/term`` with ``cat`` as an ``always`` executor, and documents."""
    pages = {"/term": {"echo": {"type": "always", "command": ["cat"]}}}
    return page_config(pages, limits=limits) + f'\n[documents]\nstore = "{store}"\ngrace_period = 5\n'



async def echo_samples(ws: Any, phase: str, count: int, interval: float, max_seconds: float) -> list[float]:
    """Round trips (seconds) of ``count`` lines through ``cat`` on the pages socket ``ws``,
    ``interval`` s apart, stopping after ``max_seconds``: a round trip still waited for then
    counts as what it took so far (a lower bound) and ends the phase."""
    samples: list[float] = []
    pending = b""
    deadline = time.monotonic() + max_seconds
    for i in range(count):
        if time.monotonic() > deadline:
            break
        line = f"{phase}-{i}\n".encode()
        frame = {"executor": "echo", "message": {"stdin": base64.b64encode(line).decode()}}
        started = time.perf_counter()
        await ws.send(json.dumps(frame))
        try:
            while line not in pending:
                wait = max(1.0, deadline - time.monotonic())
                message = json.loads(await asyncio.wait_for(ws.recv(), wait))
                body = message.get("message") or {}
                if message.get("executor") == "echo" and body.get("type") == "output":
                    pending += base64.b64decode(body.get("stdout") or body.get("stderr") or "")
        except TimeoutError:
            samples.append(time.perf_counter() - started)
            print(f"{phase}: round trip {i} unanswered after {samples[-1]:.1f} s: phase ended",
                  file=sys.stderr)
            break
        samples.append(time.perf_counter() - started)
        pending = pending.split(line, 1)[1]
        await asyncio.sleep(interval)
    return samples


async def measure(hub: HubProcess, args: argparse.Namespace) -> tuple[list[float], list[float], list[Any]]:
    """Quiet samples, then samples while the flooders run: one echo connection throughout."""
    from websockets.asyncio.client import connect

    # No client pings: a starved hub would answer them late and the client would give up.
    async with connect(f"{hub.ws}/term/ws?roomName=echo", max_size=None, open_timeout=30,
                       ping_interval=None) as ws:
        await echo_samples(ws, "warm-up", 20, 0.01, 30)  # the room and its program are up
        quiet = await echo_samples(ws, "quiet", args.samples, args.interval, args.max_seconds)
        flooders = start_flooders(hub.ws, args.flooders)
        try:
            await asyncio.sleep(args.ramp)
            flooded = await echo_samples(ws, "flooded", args.samples, args.interval, args.max_seconds)
        finally:
            floods = stop_flooders(flooders)
    return quiet, flooded, floods


async def flood(ws_url: str, room: str) -> dict[str, Any]:
    """Send one-character updates to ``/yjs/<room>`` as fast as the socket takes them, until SIGTERM."""
    from pycrdt import Doc, Text, create_sync_message, create_update_message
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    doc = Doc()
    text = doc.get("t", type=Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    sent, closed = 0, None
    started = time.perf_counter()
    async def read() -> None:  # as a y-websocket client does: the hub's frames are taken
        with contextlib.suppress(ConnectionClosed):
            async for _ in ws:
                pass

    async with connect(f"{ws_url}/yjs/{room}", max_size=None, open_timeout=30, ping_interval=None) as ws:
        await ws.recv()  # the hub's sync step 1: the room is ready
        reader = asyncio.create_task(read())
        await ws.send(create_sync_message(doc))  # synced: the hub sends it the room's updates
        print(json.dumps({"event": "ready"}), flush=True)
        try:
            while not stop.is_set():
                for _ in range(64):
                    text.insert(len(text), "x")
                    await ws.send(create_update_message(updates.pop()))
                sent += 64
                await asyncio.sleep(0)  # let the signal handler and the reader run
        except ConnectionClosed as exc:
            closed = {"code": exc.rcvd.code if exc.rcvd else None,
                      "reason": exc.rcvd.reason if exc.rcvd else None}
        reader.cancel()
    return {"sent": sent, "seconds": time.perf_counter() - started, "closed": closed}


def start_flooders(ws_url: str, count: int) -> list[subprocess.Popen[str]]:
    procs = [
        subprocess.Popen([sys.executable, __file__, "--flood", ws_url, f"flood-{i}"],
                         stdout=subprocess.PIPE, text=True)
        for i in range(count)
    ]
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("a flood client failed to start")
    return procs


def stop_flooders(procs: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    results = []
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def stats(samples: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples]
    return {"n": len(ms), "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99),
            "max_ms": max(ms) if ms else float("nan")}


def main(args: argparse.Namespace) -> None:
    limits: dict[str, Any] = {"max_connections": 1000}
    if args.receive_rate is not None:
        limits["receive_rate"] = args.receive_rate
    hub = HubProcess(hub_toml(limits, args.store), src=Path(args.hub_src).resolve() if args.hub_src else None)
    with hub:
        quiet, flooded, floods = run(measure(hub, args))
        try:
            stored = hub.get_json("/api/documents", timeout=30)
        except OSError:  # a hub still busy with the flood's backlog
            stored = []
        problems = log_problems(hub.log())
    q, f = stats(quiet), stats(flooded)
    rates = [r["sent"] / r["seconds"] for r in floods]
    ratio = f["p99_ms"] / q["p99_ms"]
    rows = [
        ["quiet", q["n"], q["p50_ms"], q["p99_ms"], q["max_ms"], ""],
        [f"{args.flooders} flooding", f["n"], f["p50_ms"], f["p99_ms"], f["max_ms"],
         " ".join(f"{r:,.0f}" for r in rates)],
        ["p99 flooded / quiet", "", "", ratio, "", ""],
    ]
    report(
        "fairness",
        ["echo round trip", "samples", "p50 ms", "p99 ms", "max ms", "updates/s sent per flooder"],
        rows,
        {
            "quiet": q, "flooded": f, "p99_ratio": ratio, "target_ratio": 3.0,
            "floods": floods, "flood_rates": rates,
            "stored": [{k: d[k] for k in ("name", "stored_updates")} for d in stored],
            "hub_src": args.hub_src or "this tree", "receive_rate": args.receive_rate,
            "store": args.store, "hubs": 1,
            "clients": {"echo": 1, "flooders": args.flooders}, "loop": loop_name("uvloop"),
            "machine": machine(),
        },
    )
    print("one hub, one echo client and the flood clients shared the machine's cores")
    print_log_problems(problems)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=300, help="echo round trips per phase")
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between round trips")
    parser.add_argument("--max-seconds", type=float, default=20.0,
                        help="a phase stops after this long even if samples are missing")
    parser.add_argument("--flooders", type=int, default=2, help="document clients flooding")
    parser.add_argument("--ramp", type=float, default=1.0, help="seconds of flood before sampling")
    parser.add_argument("--receive-rate", type=float,
                        help="the hub's server.limits.receive_rate (default: the hub's default)")
    parser.add_argument("--store", choices=("sqlite", "memory"), default="sqlite",
                        help="the documents store")
    parser.add_argument("--hub-src", help="run the hub from this source folder (default: this tree's)")
    parser.add_argument("--flood", nargs=2, metavar=("WS_URL", "ROOM"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flood:
        print(json.dumps(run(flood(*args.flood))), flush=True)
    else:
        main(args)
