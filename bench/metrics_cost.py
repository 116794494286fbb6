"""What the metrics cost: the transport's per-frame counting, and one scrape of /metrics.

Per frame, a connection calls ``Traffic.sent(size)`` or ``Traffic.received(size)``
(``roomhub.transport.traffic``) with the payload's byte count it already has: two integer
additions. This script times those calls in a loop and subtracts the floor, the same loop
calling a method that does nothing with the same argument, measured in the same run; the
target is well under a microsecond a frame.
It then times ``HubMetrics.exposition()`` (the body of one scrape) for a hub with every face's
counters and ``--rooms`` rooms of ``--members`` members watched.

Run: ``python bench/metrics_cost.py`` (a few seconds; in-process, no hub is started).
"""

from __future__ import annotations

import argparse
import sys
import timeit
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from _common import machine, report

from roomhub.core.metrics import HubMetrics
from roomhub.transport.traffic import Traffic


class Floor:
    """The loop's own cost: a bound method call with one argument that does nothing."""

    def sent(self, size: int) -> None:
        pass


class Registry:
    """A registry's shape as HubMetrics.watch reads it (rooms of members)."""

    def __init__(self, rooms: int, members: int) -> None:
        member_set = [object() for _ in range(members)]
        self.rooms = {str(i): type("R", (), {"members": set(member_set)})() for i in range(rooms)}
        self.metrics: Any = None


def per_call_ns(call: Any, size: int, number: int) -> float:
    best = min(timeit.repeat(lambda: call(size), number=number, repeat=5))
    return best / number * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--number", type=int, default=1_000_000, help="calls per timing (best of 5)")
    parser.add_argument("--rooms", type=int, default=1000, help="rooms watched for the scrape timing")
    parser.add_argument("--members", type=int, default=10, help="members per room")
    args = parser.parse_args()
    frames = {"60 B": 60, "4 KiB": 4096, "64 KiB": 65536}
    traffic, floor = Traffic("pages"), Floor()
    rows, data = [], {}
    for shape, size in frames.items():
        base = per_call_ns(floor.sent, size, args.number)
        sent = per_call_ns(traffic.sent, size, args.number)
        received = per_call_ns(traffic.received, size, args.number)
        rows.append([shape, base, sent, received, sent - base, received - base])
        data[shape] = {"floor_ns": base, "sent_ns": sent, "received_ns": received}
    report("metrics_cost", ["frame", "floor ns", "sent() ns", "received() ns", "sent - floor",
                            "received - floor"], rows, {"per_frame": data, "machine": machine()})

    metrics = HubMetrics("bench")
    for face in ("pages", "documents", "actions", "widgets", "backends"):
        t = metrics.traffic(face)
        t.opened, t.messages_sent, t.bytes_sent, t.closes = 10, 1000, 100_000, {4008: 1, 1013: 2}
    metrics.watch("pages", Registry(args.rooms, args.members))  # type: ignore[arg-type]
    body = metrics.exposition()
    scrapes = 50
    seconds = min(timeit.repeat(metrics.exposition, number=scrapes, repeat=3)) / scrapes
    report("metrics_scrape", ["rooms x members", "scrape ms", "body bytes"],
           [[f"{args.rooms} x {args.members}", seconds * 1000, len(body)]],
           {"rooms": args.rooms, "members": args.members, "scrape_seconds": seconds,
            "body_bytes": len(body), "machine": machine()})


if __name__ == "__main__":
    main()
