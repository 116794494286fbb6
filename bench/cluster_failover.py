"""Failover: from SIGKILL of a hub to its rooms serving again on another hub, over ``--trials`` trials.

Two hubs of one cluster (a private Redis and PostgreSQL, as the tests start them)
behind a private haproxy in round-robin (``tests/balancer.py``; ``--direct``:
no haproxy, the client reconnects straight to the other hub). Each trial, for
each kind of room in :data:`KINDS`:

1. a client connects straight to hub A, a witness to hub B; the client makes
   ``--updates`` edits, which the witness receives (acknowledged: the cluster
   holds them outside hub A);
2. hub A is killed with SIGKILL (t = 0);
3. the client sees its connection end, reconnects through haproxy (hub A's
   port refuses: haproxy tries the next hub), and is synced with everything
   acknowledged (``synced``), then makes one more edit, which the witness on
   hub B receives (``serving``: the room works again for everybody);
4. hub A is started again on its port for the next trial.

Prints p50 and max of both times (ms) per kind and what shared the machine.
Documents rooms are replicated (no holder: hub B serves the room all along, so
failover is the client's detection and reconnection); page rooms, held by one hub
through a lease, will add their trial to :data:`KINDS` once relaying them between
hubs exists: a function ``trial(a, b, entry) -> (synced_ms, serving_ms)``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from _common import ROOT, HubProcess, free_port, machine, percentile, report

sys.path.insert(0, str(ROOT / "tests"))  # the tests' Redis, PostgreSQL and haproxy

from documents_cluster import config
from pycrdt import Array, Doc
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from roomhub.documents import protocol as p


class YPeer:
    """A y-websocket client on the wire protocol: a pycrdt ``Doc`` kept in sync over one socket."""

    def __init__(self, doc: Doc | None = None) -> None:
        self.doc = doc or Doc()
        self.items = self.doc.get("arr", type=Array)
        self.ws: ClientConnection | None = None
        self.synced = asyncio.Event()
        self._outgoing: list[bytes] = []
        self.doc.observe(lambda event: self._outgoing.append(event.update))
        self._reader: asyncio.Task[None] | None = None

    async def connect(self, url: str) -> None:
        self.synced.clear()
        self.ws = await connect(url, max_size=None, open_timeout=10)
        await self.ws.send(p.sync_step1(self.doc.get_state()))
        self._reader = asyncio.create_task(self._read(self.ws))

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for frame in ws:
                assert isinstance(frame, bytes)
                message = p.decode(frame)
                if isinstance(message, p.SyncStep1):
                    await ws.send(p.sync_step2(self.doc.get_update(message.state_vector)))
                elif isinstance(message, p.SyncStep2 | p.SyncUpdate):
                    self.doc.apply_update(message.update)
                    self._outgoing.clear()  # what it applied came from the hub: not to be sent back
                    if isinstance(message, p.SyncStep2):
                        self.synced.set()

    async def append(self, value: str) -> None:
        self.items.append(value)
        assert self.ws is not None
        for update in self._outgoing:
            await self.ws.send(p.sync_update(update))
        self._outgoing.clear()

    async def closed(self) -> None:
        """Wait until the connection ended (the hub went away)."""
        assert self._reader is not None
        await self._reader

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await self._reader


async def until(check: Callable[[], bool], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("the trial did not finish in time")
        await asyncio.sleep(0.001)


async def documents_trial(a: HubProcess, b: HubProcess, entry: str, room: str,
                          updates: int) -> tuple[float, float]:
    """One trial with a document room (see the module): (synced, serving) in ms after SIGKILL."""
    client, witness = YPeer(), YPeer()
    await witness.connect(f"{b.ws}/yjs/{room}")
    await client.connect(f"{a.ws}/yjs/{room}")
    await asyncio.wait_for(asyncio.gather(client.synced.wait(), witness.synced.wait()), 10)
    for i in range(updates):
        await client.append(f"a{i}")
    await until(lambda: len(witness.items) == updates)  # acknowledged: hub B holds them
    acknowledged = list(witness.items.to_py())
    assert a.proc is not None
    killed = time.perf_counter()
    a.proc.send_signal(signal.SIGKILL)
    await client.closed()
    await client.connect(f"{entry}/yjs/{room}")
    await asyncio.wait_for(client.synced.wait(), 30)
    synced = time.perf_counter()
    assert client.items.to_py()[:updates] == acknowledged
    await client.append("after")
    await until(lambda: "after" in witness.items.to_py())
    serving = time.perf_counter()
    await client.close()
    await witness.close()
    return (synced - killed) * 1000, (serving - killed) * 1000


Trial = Callable[[HubProcess, HubProcess, str, str, int], Awaitable[tuple[float, float]]]
KINDS: dict[str, Trial] = {"documents": documents_trial}
"""The kinds of room measured: each a trial function (see the module). Page rooms join here once
their relaying between hubs lands."""


async def main(args: argparse.Namespace) -> None:
    from balancer import start_haproxy
    from services import running, start_postgres, start_redis

    times: dict[str, dict[str, list[float]]] = {k: {"synced": [], "serving": []} for k in KINDS}
    with contextlib.ExitStack() as stack:
        redis_server = stack.enter_context(running("roomhub-bench-redis-", start_redis))
        pg = stack.enter_context(running("roomhub-bench-postgres-", start_postgres))
        toml = config(redis_server.url, pg.dsn())
        b = stack.enter_context(HubProcess(toml))
        a_port = free_port()
        entry = b.ws
        if not args.direct:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="roomhub-bench-haproxy-")))
            balancer = start_haproxy(tmp, [a_port, b.port])
            stack.callback(balancer.stop)
            entry = balancer.ws
        for trial in range(args.trials):
            for kind, run in KINDS.items():
                a = HubProcess(toml)
                a.port = a_port  # the port haproxy knows
                with a:
                    synced, serving = await run(a, b, entry, f"failover-{trial}", args.updates)
                times[kind]["synced"].append(synced)
                times[kind]["serving"].append(serving)
                print(f"trial {trial} {kind}: synced {synced:.1f} ms, serving {serving:.1f} ms",
                      file=sys.stderr, flush=True)
    rows, figures = [], {}
    for kind, measured in times.items():
        figures[kind] = {
            f"{what}_{stat}_ms": (percentile(sorted(values), 50) if stat == "p50" else max(values))
            for what, values in measured.items() for stat in ("p50", "max")
        }
        f = figures[kind]
        rows.append([kind, args.trials, f"{f['synced_p50_ms']:.1f}", f"{f['synced_max_ms']:.1f}",
                     f"{f['serving_p50_ms']:.1f}", f"{f['serving_max_ms']:.1f}"])
    where = machine()
    report("cluster_failover",
           ["rooms", "trials", "synced p50 ms", "synced max ms", "serving p50 ms", "serving max ms"],
           rows, {"figures": figures, "trials": args.trials, "updates": args.updates,
                  "through": "direct" if args.direct else "haproxy", **where})
    print(f"from SIGKILL of a hub to its room serving again on the other, {args.trials} trials, "
          f"through {'no balancer' if args.direct else 'haproxy'}; the machine's {where['cpus']} cores "
          f"shared by 2 hubs, Redis, PostgreSQL{'' if args.direct else ', haproxy'} and this client; "
          f"load average {where['load_avg']}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20, help="kills (default 20)")
    parser.add_argument("--updates", type=int, default=50, help="acknowledged edits before each kill (50)")
    parser.add_argument("--direct", action="store_true",
                        help="no haproxy: the client reconnects straight to the other hub")
    asyncio.run(main(parser.parse_args()))
