"""The floor of fan-out: the CPU a process spends on one small send() on loopback TCP.

A document hub delivers an update to a member with one send() of a small WebSocket frame;
whatever else it does, a delivery cannot cost less than that system call. This measures it
alone: ``--connections`` loopback TCP connections whose other ends a separate process reads
(and discards, as a client would), and this process sending ``--size``-byte messages to
``--fanout`` of them at a time (a room's members): as fast as it can (``max``); in bursts at
``--rate`` bursts per second (``paced``: like 25 updates/s per client, the readers asleep
between bursts, so most sends also wake a reader); and the pacing alone (``pacing``: the
sleep and wake-up per burst, no send; per burst). Printed: this process's CPU time (user and
system, ``getrusage``) per send, in microseconds, and how much of it is the kernel's.

    python bench/loopback_send.py                 # both patterns, defaults of documents_bench
    python bench/loopback_send.py --rate 250 --fanout 10 --seconds 5

The machine may be shared: run it more than once and quote the spread.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time

READER = """
import selectors, socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
sel = selectors.DefaultSelector()
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        if not key.fileobj.recv(65536):
            sys.exit(0)
"""


def measure(conns: list[socket.socket], fanout: int, size: int, seconds: float,
            rate: float | None) -> dict[str, float]:
    """Send ``size`` bytes to ``fanout`` connections per burst for ``seconds``; CPU per send."""
    message = b"\x82" + bytes([size - 2]) + b"x" * (size - 2)  # a small binary WebSocket frame
    groups = [conns[i:i + fanout] for i in range(0, len(conns), fanout or len(conns))]
    sends = 0
    start_times = resource.getrusage(resource.RUSAGE_SELF)
    start = time.monotonic()
    next_burst = start
    burst = 0
    while True:
        now = time.monotonic()
        if now - start >= seconds:
            break
        if rate is not None:
            if now < next_burst:
                time.sleep(next_burst - now)
            next_burst += 1.0 / rate
        for sock in groups[burst % len(groups)] if fanout else ():
            sock.send(message)
        sends += len(groups[burst % len(groups)]) if fanout else 1
        burst += 1
    end_times = resource.getrusage(resource.RUSAGE_SELF)
    user = end_times.ru_utime - start_times.ru_utime
    system = end_times.ru_stime - start_times.ru_stime
    return {
        "sends": sends,
        "sends_per_s": sends / (time.monotonic() - start),
        "cpu_us_per_send": (user + system) / sends * 1e6,
        "system_us_per_send": system / sends * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--fanout", type=int, default=10, help="sends per burst (a room's members)")
    parser.add_argument("--size", type=int, default=40, help="bytes per send")
    parser.add_argument("--rate", type=float, default=2500.0,
                        help="paced bursts per second (100 clients x 25 updates/s: 2500)")
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    reader = subprocess.Popen([sys.executable, "-c", READER, str(port), str(args.connections)],
                              stdout=subprocess.PIPE, text=True)
    conns = []
    for _ in range(args.connections):
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conns.append(conn)
    assert reader.stdout is not None and reader.stdout.readline().strip() == "ready"
    results = {}
    try:
        results["max"] = measure(conns, args.fanout, args.size, args.seconds, None)
        results["paced"] = measure(conns, args.fanout, args.size, args.seconds, args.rate)
        # The pacing alone (a sleep and a wake-up per burst, no send): per burst, not per send.
        results["pacing"] = measure(conns, 0, args.size, args.seconds, args.rate)
    finally:
        for conn in conns:
            conn.close()
        reader.wait(10)
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for name, r in results.items():
        print(f"{name:6} {r['sends_per_s']:>10.0f} sends/s   CPU {r['cpu_us_per_send']:.2f} us/send"
              f"   (kernel {r['system_us_per_send']:.2f} us)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
