"""Fairness: a terminal's echo in one room while document clients flood another room.

One hub (the real command line, SQLite document store) serves a page with an
``always`` executor running ``cat`` and ``/yjs``. A pages client in room
``echo`` sends a line to ``cat``'s stdin and waits for it to come back in an
``output`` frame: that round trip is one sample. Each case of one run takes
the samples twice, quiet, then while ``--flooders`` document clients
(separate processes, pycrdt updates as y-websocket frames over
``websockets``, each in its own document room, synced as a y-websocket
client is) send one-character updates at a case's rate: by default the
issue's 5,700 and 7,200 updates/s (``--rates``; 0: as fast as the socket
takes them), each at normal priority and at ``nice 19`` (``--nice``). The
flooders stand for remote clients, but here they share the machine's cores
with the hub: at normal priority their CPU is taken from the hub's, niced
they get only what the hub and the echo leave (as a client on another
machine would). The figure that matters is p99 flooded / p99 quiet
(target: at most 3), printed for every case.

For each phase the bench prints what shared the cores: the processes of the
run (one hub, its ``cat``, the echo client, the flooders) and their CPU (per
cent of one core), the hub's time waiting for a core (ms per second, from
``/proc/<pid>/schedstat``: run-queue time, i.e. the hub was ready to run and
another process had the core), and the CPU every other process of the
machine used meanwhile (other people's work on a shared machine).

``--hub-src DIR`` runs the hub from another source tree (e.g. a checkout of an
older commit) to compare before and after a change in the same conditions.
The flood clients report how many updates they sent, and how their
connection ended if the hub closed it.

Run: ``python bench/fairness_bench.py`` (about a minute on a 2-core machine).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
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


def schedstat(pid: int) -> tuple[float, float]:
    """``(on a core, waiting for one)`` seconds of every thread of process ``pid`` so far
    (``/proc/<pid>/task/*/schedstat``; threads that ended are not counted)."""
    ran = waited = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError):
            fields = (task / "schedstat").read_text().split()
            ran += int(fields[0])
            waited += int(fields[1])
    return ran / 1e9, waited / 1e9


def busy_cpu_seconds() -> float:
    """CPU seconds every process of the machine has used so far (``/proc/stat``: all but idle and
    I/O wait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    return (sum(fields[:8]) - fields[3] - fields[4]) / ticks


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


class Meter:
    """CPU shares of one phase, over one or more stretches of time: :meth:`start` and
    :meth:`stop` each stretch (``flooders``: the flooders' processes during it), then
    :meth:`figures` (per cent of one core; the hub's wait for a core in ms per second)."""

    def __init__(self, hub: HubProcess) -> None:
        assert hub.proc is not None
        self.hub_pid = hub.proc.pid
        self.program = hub.children()  # cat
        self.echo = [psutil.Process()]
        self.flooders: list[psutil.Process] = []
        self.totals: dict[str, float] = {}

    def sample(self) -> dict[str, float]:
        ran, waited = schedstat(self.hub_pid)
        return {"wall": time.monotonic(), "hub": ran, "hub_wait": waited,
                "program": cpu_seconds(self.program), "echo": cpu_seconds(self.echo),
                "flooders": cpu_seconds(self.flooders), "machine": busy_cpu_seconds()}

    def start(self, flooders: list[psutil.Process] | None = None) -> None:
        self.flooders = flooders or []
        self.started = self.sample()

    def stop(self) -> None:
        end = self.sample()
        for key, value in end.items():
            self.totals[key] = self.totals.get(key, 0.0) + value - self.started[key]

    def figures(self) -> dict[str, float]:
        d = self.totals
        wall = d["wall"]
        ours = d["hub"] + d["program"] + d["echo"] + d["flooders"]
        return {
            "seconds": wall,
            "hub_cpu_pct": 100 * d["hub"] / wall,
            "hub_wait_ms_per_s": 1000 * d["hub_wait"] / wall,
            "program_cpu_pct": 100 * d["program"] / wall,
            "echo_cpu_pct": 100 * d["echo"] / wall,
            "flooders_cpu_pct": 100 * d["flooders"] / wall,
            "others_cpu_pct": max(0.0, 100 * (d["machine"] - ours) / wall),
        }


async def updates_applied(hub: HubProcess, rooms: set[str]) -> int:
    """Updates the hub applied so far in the document rooms ``rooms`` (``/api/rooms``)."""
    listing = await asyncio.to_thread(hub.get_json, "/api/rooms", 30)
    return sum(r.get("updates_applied", 0) for r in listing if r.get("name") in rooms)


async def measure(hub: HubProcess, args: argparse.Namespace) -> list[dict[str, Any]]:
    """For each case (rate, niceness), ``--rounds`` times: quiet samples, then samples while the
    flooders run, so that both phases meet the same load of the machine's other work; one echo
    connection throughout."""
    from websockets.asyncio.client import connect

    cases = []
    per_round = max(1, args.samples // args.rounds)
    # No client pings: a starved hub would answer them late and the client would give up.
    async with connect(f"{hub.ws}/term/ws?roomName=echo", max_size=None, open_timeout=30,
                       ping_interval=None) as ws:
        await echo_samples(ws, "warm-up", 20, 0.01, 30)  # the room and its program are up
        for number, (rate, nice) in enumerate((r, n) for r in args.rates for n in args.nice):
            name = f"{rate:,.0f}/s" if rate else "unpaced"
            name += f", nice {nice}" if nice else ""
            quiet: list[float] = []
            flooded: list[float] = []
            floods: list[dict[str, Any]] = []
            applied = 0
            quiet_cpu, flooded_cpu = Meter(hub), Meter(hub)
            for round_ in range(args.rounds):
                quiet_cpu.start()
                quiet += await echo_samples(ws, "quiet", per_round, args.interval, args.max_seconds)
                quiet_cpu.stop()
                rooms = {f"flood-{number}-{round_}-{i}" for i in range(args.flooders)}
                flooders = start_flooders(hub.ws, sorted(rooms), rate, nice)
                try:
                    await asyncio.sleep(args.ramp)
                    before = await updates_applied(hub, rooms)
                    flooded_cpu.start([psutil.Process(p.pid) for p in flooders])
                    flooded += await echo_samples(ws, "flooded", per_round, args.interval, args.max_seconds)
                    flooded_cpu.stop()
                    applied += await updates_applied(hub, rooms) - before
                finally:
                    floods += stop_flooders(flooders)
                await asyncio.sleep(0.5)  # the flood rooms are left
            flooded_figures = flooded_cpu.figures()
            cases.append({"case": name, "rate": rate, "nice": nice, "quiet": stats(quiet),
                          "flooded": stats(flooded), "quiet_cpu": quiet_cpu.figures(),
                          "flooded_cpu": flooded_figures, "floods": floods,
                          "applied_per_s": applied / flooded_figures["seconds"]})
    return cases


async def flood(ws_url: str, room: str, rate: float) -> dict[str, Any]:
    """Send one-character updates to ``/yjs/<room>``, ``rate`` per second (0: as fast as the socket
    takes them), until SIGTERM."""
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

    async def read() -> None:  # as a y-websocket client does: the hub's frames are taken
        with contextlib.suppress(ConnectionClosed):
            async for _ in ws:
                pass

    async with connect(f"{ws_url}/yjs/{room}", max_size=None, open_timeout=30, ping_interval=None) as ws:
        await ws.recv()  # the hub's sync step 1: the room is ready
        reader = asyncio.create_task(read())
        await ws.send(create_sync_message(doc))  # synced: the hub sends it the room's updates
        print(json.dumps({"event": "ready"}), flush=True)
        started = time.perf_counter()
        try:
            while not stop.is_set():
                # Paced: as many as the rate allows by now (a late tick catches up, by at most
                # a tenth of a second's worth); unpaced: 64 at a time.
                due = 64 if not rate else min(int(rate * (time.perf_counter() - started)) - sent,
                                              int(rate / 10) + 1)
                for _ in range(due):
                    text.insert(len(text), "x")
                    await ws.send(create_update_message(updates.pop()))
                sent += max(0, due)
                await asyncio.sleep(0.005 if rate else 0)  # let the signal handler and reader run
        except ConnectionClosed as exc:
            closed = {"code": exc.rcvd.code if exc.rcvd else None,
                      "reason": exc.rcvd.reason if exc.rcvd else None}
        reader.cancel()
    return {"sent": sent, "seconds": time.perf_counter() - started, "closed": closed}


def start_flooders(ws_url: str, rooms: list[str], rate: float, nice: int) -> list[subprocess.Popen[str]]:
    procs = [
        subprocess.Popen([sys.executable, __file__, "--flood", ws_url, room, str(rate)],
                         stdout=subprocess.PIPE, text=True,
                         preexec_fn=(lambda: os.nice(nice)) if nice else None)
        for room in rooms
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
        cases = run(measure(hub, args))
        problems = log_problems(hub.log())
    rows = []
    for case in cases:
        q, f = case["quiet"], case["flooded"]
        case["p99_ratio"] = f["p99_ms"] / q["p99_ms"]
        sent = sum(r["sent"] for r in case["floods"]) / sum(r["seconds"] for r in case["floods"])
        sent *= args.flooders  # per second, all flooders of a round together
        for phase, st, cpu in (("quiet", q, case["quiet_cpu"]), ("flooded", f, case["flooded_cpu"])):
            rows.append([
                f"{case['case']}: {phase}", st["p50_ms"], st["p99_ms"],
                case["p99_ratio"] if phase == "flooded" else "",
                f"{sent:,.0f}" if phase == "flooded" else "",
                f"{case['applied_per_s']:,.0f}" if phase == "flooded" else "",
                cpu["hub_cpu_pct"], cpu["hub_wait_ms_per_s"], cpu["program_cpu_pct"] + cpu["echo_cpu_pct"],
                cpu["flooders_cpu_pct"] if phase == "flooded" else "", cpu["others_cpu_pct"],
            ])
    report(
        "fairness",
        ["echo round trip", "p50 ms", "p99 ms", "p99 / quiet", "updates/s sent", "applied/s",
         "hub CPU %", "hub wait ms/s", "cat+echo CPU %", "flooders CPU %", "others CPU %"],
        rows,
        {
            "cases": cases, "target_ratio": 3.0,
            "hub_src": args.hub_src or "this tree", "receive_rate": args.receive_rate,
            "store": args.store, "hubs": 1,
            "clients": {"echo": 1, "flooders": args.flooders}, "loop": loop_name("uvloop"),
            "machine": machine(),
        },
    )
    print(f"processes of this run on the machine's {os.cpu_count()} cores: 1 hub, 1 program (cat), "
          f"1 echo client, {args.flooders} flooder(s) while flooding; CPU % is of one core; "
          "'hub wait' is the time the hub was ready to run while another process had the core; "
          "'others' is every other process of the machine (other work sharing the cores)")
    print_log_problems(problems)


def numbers(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=300, help="echo round trips per phase")
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between round trips")
    parser.add_argument("--max-seconds", type=float, default=20.0,
                        help="a phase stops after this long even if samples are missing")
    parser.add_argument("--flooders", type=int, default=1, help="document clients flooding")
    parser.add_argument("--rounds", type=int, default=3,
                        help="quiet and flooded phases of each case alternate this many times")
    parser.add_argument("--rates", type=numbers, default=[5700.0, 7200.0],
                        help="updates/s each flooder sends, one case each (comma-separated; 0: as "
                        "fast as the socket takes them)")
    parser.add_argument("--nice", type=lambda t: [int(x) for x in numbers(t)], default=[0, 19],
                        help="the flooders' niceness, one case each with each rate (comma-separated)")
    parser.add_argument("--ramp", type=float, default=1.0, help="seconds of flood before sampling")
    parser.add_argument("--receive-rate", type=float,
                        help="the hub's server.limits.receive_rate (default: the hub's default)")
    parser.add_argument("--store", choices=("sqlite", "memory"), default="sqlite",
                        help="the documents store")
    parser.add_argument("--hub-src", help="run the hub from this source folder (default: this tree's)")
    parser.add_argument("--flood", nargs=3, metavar=("WS_URL", "ROOM", "RATE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flood:
        url, room, rate = args.flood
        print(json.dumps(run(flood(url, room, float(rate)))), flush=True)
    else:
        main(args)
