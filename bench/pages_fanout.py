"""Fan-out: one executor writing output as fast as it can to a room of 100 clients.

A page's ``once`` executor runs ``yes`` (a pipe the hub reads in 64 KiB
chunks, as fast as it can) for ``--seconds``; the hub's executor timeout
then kills it. ``--clients`` ``websockets`` clients, spread over ``--procs``
client processes (so the client side is not one event loop), join one room
first; a separate control connection then asks for the run and leaves.

Measured, from the request to each client's ``finished`` frame (or its
close): program output bytes delivered (base64-decoded size; wire bytes
too), per client and summed; the hub's CPU seconds (user + system of the
hub process, from ``/proc`` through psutil) per delivered MB; clients
closed by the hub as slow consumers (close code 4008); the client
processes' own CPU, to show whether they were the bottleneck.

``--reference`` also runs the same fan-out against a bare ``websockets``
server of the same design (per-client bounded queue of ``--queue`` frames
and writer task, close 4008 on overflow, the same JSON+base64 frames) in
this run, to price what the hub's stack adds.

    python bench/pages_fanout.py [--clients 100] [--procs 2] [--seconds 10] [--reference]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import resource
import time
from multiprocessing.connection import Connection as Pipe
from typing import Any

import _common as c
import websockets

EXECUTOR = "firehose"
COMMAND = ["yes", "roomhub fan-out benchmark: one line of output written as fast as possible"]
OUTPUT_PREFIX = b'{"executor":"firehose","message":{"type":"output","stdout":"'
MB = 1_000_000
SLOW_CONSUMER = 4008


# -- the client side (runs in --procs processes) ------------------------------------------
async def client(url: str, joined: asyncio.Event, result: dict[str, Any]) -> None:
    """One room member: counts ``firehose`` output until ``finished`` or the close."""
    payload = wire = frames = 0
    first = last = None
    try:
        async with websockets.connect(
            url, max_size=None, compression=None, max_queue=64, open_timeout=60
        ) as ws:
            while True:
                data = await ws.recv(decode=False)
                if data.startswith(OUTPUT_PREFIX):
                    now = time.monotonic()
                    first = first or now
                    last = now
                    frames += 1
                    wire += len(data)
                    b64 = len(data) - len(OUTPUT_PREFIX) - 3  # minus '"}}'
                    payload += b64 * 3 // 4 - data[-5:-3].count(b"=")
                    continue
                frame = json.loads(data)
                kind = (frame.get("message") or {}).get("type")
                if kind == "joined":
                    joined.set()
                elif kind == "finished" and frame.get("executor") == EXECUTOR:
                    result["finished"] = time.monotonic()
                    break
    except websockets.ConnectionClosed as exc:
        result["close_code"] = exc.rcvd.code if exc.rcvd else None
        result["close_reason"] = exc.rcvd.reason if exc.rcvd else ""
    except Exception as exc:  # a failed client is reported, not fatal to the others
        result["error"] = repr(exc)
    finally:
        joined.set()
        result.update(payload=payload, wire=wire, frames=frames, first=first, last=last)
        result["end"] = time.monotonic()


async def client_process_main(url: str, count: int, pipe: Pipe) -> None:
    results: list[dict[str, Any]] = [{} for _ in range(count)]
    events = [asyncio.Event() for _ in range(count)]
    tasks = []
    for i in range(count):  # one at a time: a burst of 100 handshakes is not what is measured
        tasks.append(asyncio.create_task(client(url, events[i], results[i])))
        await events[i].wait()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    pipe.send(("ready", sum(1 for r in results if "error" not in r)))
    await asyncio.gather(*tasks)
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    pipe.send(("done", results, cpu))


def client_process(url: str, count: int, pipe: Pipe, loop: str) -> None:
    c.run(client_process_main(url, count, pipe), loop)


# -- the run ------------------------------------------------------------------------------
async def drive(url: str, args: argparse.Namespace, cpu_of: Any) -> dict[str, Any]:
    """Start the client processes, trigger the firehose, gather what every client saw."""
    ctx = mp.get_context("spawn")
    per_proc = [
        args.clients // args.procs + (i < args.clients % args.procs) for i in range(args.procs)
    ]
    pipes, procs = [], []
    for count in per_proc:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=client_process, args=(url, count, child, args.loop), daemon=True)
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    try:
        ready = 0
        for pipe in pipes:
            kind, n = await asyncio.to_thread(pipe.recv)
            assert kind == "ready"
            ready += n
        cpu_before = cpu_of()
        started = time.monotonic()
        async with websockets.connect(url, compression=None) as control:
            await control.send(json.dumps({"executor": EXECUTOR, "message": {"run": True}}))
        results: list[dict[str, Any]] = []
        client_cpu = 0.0
        for pipe in pipes:
            if not await asyncio.to_thread(pipe.poll, args.seconds + 120):
                raise RuntimeError("a client process did not finish in time")
            kind, res, cpu = pipe.recv()
            results += res
            client_cpu += cpu
        cpu_after = cpu_of()
    finally:
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
    return summarise(results, started, cpu_after - cpu_before, client_cpu, ready, args)


def summarise(
    results: list[dict[str, Any]],
    started: float,
    server_cpu: float,
    client_cpu: float,
    ready: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    ends = [r.get("finished") or r["end"] for r in results]
    window = max(ends) - started
    payload = sum(r["payload"] for r in results)
    wire = sum(r["wire"] for r in results)
    rates = [r["payload"] / (end - started) for r, end in zip(results, ends, strict=True)]
    closes: dict[str, int] = {}
    for r in results:
        if "close_code" in r:
            closes[str(r["close_code"])] = closes.get(str(r["close_code"]), 0) + 1
    return {
        "clients": len(results),
        "clients_joined": ready,
        "finished": sum(1 for r in results if "finished" in r),
        "closed": closes,
        "slow_consumers_closed": closes.get(str(SLOW_CONSUMER), 0),
        "errors": [r["error"] for r in results if "error" in r][:5],
        "window_s": window,
        "produced_bytes": max(r["payload"] for r in results),
        "delivered_bytes": payload,
        "delivered_wire_bytes": wire,
        "delivered_MBps": payload / window / MB,
        "delivered_wire_MBps": wire / window / MB,
        "per_client_MBps": c.summary([x / MB for x in rates]),
        "frames_per_client": c.summary([float(r["frames"]) for r in results]),
        "server_cpu_s": server_cpu,
        "server_cpu_s_per_MB": server_cpu / (payload / MB) if payload else float("nan"),
        "server_cpu_s_per_wire_MB": server_cpu / (wire / MB) if wire else float("nan"),
        "server_cpu_share": server_cpu / window,
        "client_cpu_s": client_cpu,
        "client_cpu_share": client_cpu / window,
    }


async def main(args: argparse.Namespace) -> None:
    c.raise_open_files(args.clients * 2 + 256)
    toml = c.page_config(
        {"/fan": {EXECUTOR: {"type": "once", "command": COMMAND, "timeout": args.seconds}}},
        limits={
            "max_clients_per_room": args.clients + 10,
            "send_buffer_bytes": args.send_buffer,
            **({"send_high_water_bytes": args.high_water} if args.high_water else {}),
        },
    )
    runs: dict[str, dict[str, Any]] = {}
    with c.HubProcess(toml) as hub:
        runs["roomhub"] = await drive(f"{hub.ws}/fan/ws?roomName=fanout&roomhub=1", args, hub.cpu_seconds)
        hub_rss = hub.rss()
        problems = c.log_problems(hub.log())
    if args.reference:
        with c.ReferenceProcess(queue=args.queue, seconds=args.seconds, loop=args.loop) as ref:
            runs["reference"] = await drive(f"{ref.ws}/", args, ref.cpu_seconds)

    rows = []
    for name, r in runs.items():
        rows.append(
            [
                name,
                r["finished"],
                r["slow_consumers_closed"],
                r["window_s"],
                r["delivered_MBps"],
                r["per_client_MBps"]["median"],
                r["per_client_MBps"]["min"],
                r["server_cpu_s"],
                r["server_cpu_s_per_MB"] * 1000,
                r["server_cpu_share"],
                r["client_cpu_share"],
            ]
        )
    print(
        f"fan-out: {args.clients} clients in {args.procs} client processes, {args.seconds} s of "
        f"`yes`, send buffer {args.send_buffer} bytes (reference: queue of {args.queue} frames), "
        f"client loop {c.loop_name(args.loop)}; "
        "MB = 10^6 bytes of program output"
    )
    c.report(
        "pages_fanout",
        [
            "server",
            "finished",
            "closed 4008",
            "window s",
            "MB/s all",
            "MB/s client med",
            "MB/s client min",
            "cpu s",
            "cpu ms/MB",
            "server cpu share",
            "client cpu share",
        ],
        rows,
        {
            "clients": args.clients,
            "procs": args.procs,
            "seconds": args.seconds,
            "send_buffer_bytes": args.send_buffer,
            "send_high_water_bytes": args.high_water or None,
            "reference_queue_frames": args.queue,
            "runs": runs,
            "hub_rss_bytes": hub_rss,
            "hub_log_problems": problems,
            "machine": c.machine(),
        },
    )
    if "reference" in runs:
        hub_rate, ref_rate = runs["roomhub"]["delivered_MBps"], runs["reference"]["delivered_MBps"]
        hub_cpu = runs["roomhub"]["server_cpu_s_per_MB"]
        ref_cpu_mb = runs["reference"]["server_cpu_s_per_MB"]
        print(
            f"ratio roomhub/reference: throughput {hub_rate / ref_rate:.2f}x, "
            f"CPU per MB {hub_cpu / ref_cpu_mb:.2f}x"
        )
    for name, r in runs.items():
        if r["errors"]:
            print(f"{name}: client errors: {r['errors']}")
    c.print_log_problems(problems)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100, help="room members (default 100)")
    parser.add_argument("--procs", type=int, default=2, help="client processes (default 2)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long `yes` runs")
    parser.add_argument("--queue", type=int, default=1024, help="the reference's send queue bound, frames")
    parser.add_argument("--send-buffer", type=int, default=16 * 1024 * 1024,
                        help="the hub's send_buffer_bytes (its default: 16 MiB)")
    parser.add_argument("--high-water", type=int, default=0,
                        help="the hub's send_high_water_bytes (0: its default, a quarter of "
                        "send_buffer_bytes, at most 1 MiB)")
    parser.add_argument(
        "--reference",
        action="store_true",
        help="also measure a bare websockets server of the same design",
    )
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    arguments = parser.parse_args()
    c.run(main(arguments), arguments.loop)
