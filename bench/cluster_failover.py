"""Failover: from SIGKILL of a hub to its rooms serving again on another hub, over ``--trials`` trials.

Two hubs of one cluster (a private Redis and PostgreSQL, as the tests start them)
behind a private haproxy in round-robin (``tests/balancer.py``; ``--direct``:
no haproxy, the client reconnects straight to the other hub). Each trial, for
each kind of room in :data:`KINDS` (``--kinds``), with hub A started afresh on
its port (hub B serves every trial) and a room name of its own:

1. a client connects straight to hub A, a witness to hub B; the client makes
   ``--updates`` changes, which the witness receives (acknowledged);
2. hub A is killed with SIGKILL (t = 0);
3. the client sees its connection end, reconnects through haproxy (hub A's
   port refuses: haproxy tries the next hub) and is back in the room on hub B
   (``synced``), then makes one more change, which the witness on hub B
   receives (``serving``: the room works again for everybody);
4. hub A is stopped (dead already) and started again for the next trial.

The kinds:

- ``documents`` (:func:`documents_trial`): a y-websocket document, its changes
  edits. Documents are replicated (no holder: hub B serves the room all along,
  and holds every acknowledged edit), so failover is the client's detection and
  reconnection; ``synced``: its copy synced with everything acknowledged.
- ``pages`` (:func:`pages_trial`): a page room running ``cat`` after a
  prologue, its changes lines to ``cat``'s stdin, echoed to every member. The
  room is held by hub A (its first member joined there; the trial checks the
  lease in ``GET /api/cluster``) and the witness is relayed to it through hub B.
  When hub A dies the room dies with it: the client's connection ends without
  a close frame (1006), hub B closes the relayed witness with 1012 ("the
  room's hub changed: reconnect"; the codes seen are printed), the witness
  reconnects straight to hub B (a member stays with its hub), and both
  connections are accepted and wait there: hub B reads the time hub A's
  lease has left and looks again when it lapses (``[cluster] lease_seconds``
  after hub A's last renewal), then takes it and makes the room anew
  (prologue run again, ``cat`` started fresh, nothing of the old room's
  output kept: the trial checks the prologue's output names another pid, the
  old lines never come back, and hub B holds the lease).
  ``synced``: the client's ``joined`` frame from the new room; ``serving``:
  its line echoed by the new ``cat`` to the witness (live, or in the
  scrollback the witness gets on joining if it joined later). Both are about
  the lease time left at the kill (at most a lease), which ``--lease`` sets
  (default: the hub's own default, 5 s; ``--heartbeat``: a fifth of it). The
  kill comes at a random moment of hub A's renewal period (a pause of up to
  a heartbeat after the last line is acknowledged): a member joining renews
  the lease, and a kill right after it would always find a whole lease left.

Clients reconnect at once (a browser's client adds its reconnection backoff),
and again if a reconnection is closed before it joined (counted). Prints p50
and max of both times (ms) per kind, the lease time, how the hub closed each
page trial's members, and what shared the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import random
import signal
import sys
import tempfile
import time
import tomllib
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _common import ROOT, HubProcess, free_port, machine, percentile, report

sys.path.insert(0, str(ROOT / "tests"))  # the tests' Redis, PostgreSQL and haproxy

from documents_cluster import config as documents_config
from pycrdt import Array, Doc
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from roomhub.documents import protocol as p

PAGE = "/p"
PAGE_CONFIG = f"""
[pages."{PAGE}"]
html = "page.html"

[pages."{PAGE}".executors.setup]
type = "prologue"
command = ["sh", "-c", "echo prologue $$"]

[pages."{PAGE}".executors.cat]
type = "always"
command = ["cat"]
"""
"""The page of the ``pages`` trial: a prologue printing its own pid (each room's differs: the
room made anew shows another) and ``cat``, whose output every member of the room gets."""


def config(redis_url: str, dsn: str, lease: float, heartbeat: float) -> str:
    """The hubs' configuration: the documents benchmark's cluster (``documents_cluster.config``)
    with the lease time and heartbeat given, and the page of the ``pages`` trial."""
    text = (documents_config(redis_url, dsn)
            + f"lease_seconds = {lease!r}\nheartbeat_seconds = {heartbeat!r}\n" + PAGE_CONFIG)
    parsed = tomllib.loads(text)  # the keys added must have landed in [cluster]
    assert parsed["cluster"]["lease_seconds"] == lease, "[cluster] is no longer the last table"
    return text


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


class PagePeer:
    """One connection of a pages client asking for roomhub's additions (as roomhub's browser client
    does: it gets the ``joined`` frame). Every frame is timestamped when it arrives, and the output
    of each executor is kept, so that a wait reports when something came, not when it was seen."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.joined_at: float | None = None
        self.output: dict[str, bytearray] = {}
        self.marks: dict[str, list[tuple[int, float]]] = {}  # executor -> (output length, arrival)
        self.close_code: int | None = None
        self.close_reason = ""
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, url: str) -> PagePeer:
        return cls(await connect(url + "&roomhub=1", max_size=None, open_timeout=10))

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                now = time.perf_counter()
                frame = json.loads(raw)
                executor, message = frame.get("executor"), frame.get("message") or {}
                if executor is None and message.get("type") == "joined" and self.joined_at is None:
                    self.joined_at = now
                elif message.get("type") == "output":
                    out = self.output.setdefault(executor, bytearray())
                    out += base64.b64decode(message.get("stdout") or message.get("stderr") or "")
                    self.marks.setdefault(executor, []).append((len(out), now))
        except ConnectionClosed:
            pass
        self.close_code = self.ws.close_code  # 1006: ended without a close frame
        self.close_reason = self.ws.close_reason or ""

    def joined(self) -> float | None:
        """When the room's ``joined`` frame came (None: not yet)."""
        return self.joined_at

    @property
    def ended(self) -> bool:
        return self._reader.done()

    def seen(self, executor: str, needle: bytes) -> float | None:
        """When ``needle`` was complete in ``executor``'s output (None: not yet)."""
        at = self.output.get(executor, bytearray()).find(needle)
        if at < 0:
            return None
        return next(t for length, t in self.marks[executor] if length >= at + len(needle))

    async def wait(self, what: Callable[[], float | None], within: float = 30.0) -> float:
        """When ``what()`` became true (a timestamp); ConnectionError if the connection ends first."""
        await until(lambda: what() is not None or self.ended, within)
        when = what()
        if when is None:
            raise ConnectionError(f"closed {self.close_code} {self.close_reason!r} first")
        return when

    async def stdin(self, executor: str, text: str) -> None:
        message = {"stdin": base64.b64encode(text.encode()).decode()}
        await self.ws.send(json.dumps({"executor": executor, "message": message}))

    def closes(self) -> str:
        return f"{self.close_code} {self.close_reason!r}" if self.close_reason else str(self.close_code)

    async def close(self) -> None:
        await self.ws.close()
        await self._reader


async def until(check: Callable[[], bool], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("the trial did not finish in time")
        await asyncio.sleep(0.001)


async def documents_trial(a: HubProcess, b: HubProcess, entry: str, room: str,
                          updates: int) -> tuple[float, float, dict[str, Any]]:
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
    return (synced - killed) * 1000, (serving - killed) * 1000, {}


async def cluster_view(hub: HubProcess) -> dict[str, Any]:
    return await asyncio.to_thread(hub.get_json, "/api/cluster")


async def lease_hub(hub: HubProcess, key: str) -> str | None:
    """The id of the hub holding lease ``key``, as ``GET /api/cluster`` on ``hub`` says."""
    leases = (await cluster_view(hub))["leases"]
    return next((lease["hub"] for lease in leases if lease["room"] == key), None)


async def rejoin(url: str, within: float = 30.0) -> tuple[PagePeer, int]:
    """Connect to ``url`` until a connection joins the room (again at once when one is closed
    first, as a browser's client would after its backoff): that connection and the attempts."""
    deadline = time.monotonic() + within
    attempts = 0
    while True:
        attempts += 1
        try:
            peer = await PagePeer.connect(url)
            await peer.wait(peer.joined, max(0.1, deadline - time.monotonic()))
            return peer, attempts
        except (OSError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.01)


async def pages_trial(a: HubProcess, b: HubProcess, entry: str, room: str,
                      updates: int) -> tuple[float, float, dict[str, Any]]:
    """One trial with a page room held by hub A (see the module): (synced, serving) in ms after
    SIGKILL, and how the hub closed the members and how long the witness took to join again."""
    path = f"{PAGE}/ws?roomName={room}"
    key = f"pages:{PAGE}:{room}"
    client = await PagePeer.connect(f"{a.ws}{path}")  # the first member: hub A makes the room
    await client.wait(client.joined, 10)
    witness = await PagePeer.connect(f"{b.ws}{path}")  # relayed to hub A
    await witness.wait(witness.joined, 10)
    a_id, b_view = (await cluster_view(a))["hub"], await cluster_view(b)
    assert await lease_hub(b, key) == a_id, f"hub A does not hold {key}: {b_view['leases']}"
    [own] = [h for h in b_view["hubs"] if h["id"] == b_view["hub"]]
    assert not [r for r in own["room_list"] if r["namespace"] == PAGE], "the witness is not relayed"
    prologue_a = bytes(client.output["setup"])
    for i in range(updates):
        await client.stdin("cat", f"before-{i}\n")
    last = f"before-{updates - 1}\n".encode()
    await witness.wait(lambda: witness.seen("cat", last), 10)  # acknowledged: all through cat
    assert a.proc is not None
    await asyncio.sleep(random.uniform(0, b_view["heartbeat_seconds"]))  # see the module
    killed = time.perf_counter()
    a.proc.send_signal(signal.SIGKILL)

    async def witness_back() -> tuple[PagePeer, int, float]:
        await witness._reader
        ended = time.perf_counter()
        peer, attempts = await rejoin(f"{b.ws}{path}")  # a member of hub B stays with hub B
        return peer, attempts, ended

    witnessing = asyncio.create_task(witness_back())
    await client._reader
    client_ended = time.perf_counter()
    first = client
    client, attempts = await rejoin(f"{entry}{path}")
    assert client.joined_at is not None
    synced = client.joined_at
    await client.stdin("cat", "after\n")
    witness_again, witness_attempts, witness_ended = await asyncio.wait_for(witnessing, 30)
    serving = await witness_again.wait(lambda: witness_again.seen("cat", b"after\n"))
    # the room made anew on hub B: its own prologue (another pid), its own cat, no old output
    assert await lease_hub(b, key) == b_view["hub"], "hub B does not hold the room"
    assert client.output["setup"] != prologue_a and client.output["setup"].startswith(b"prologue ")
    assert b"before-" not in witness_again.output.get("cat", b""), "the old room's output came back"
    await client.close()
    await witness_again.close()
    assert witness_again.joined_at is not None
    ms = lambda t: (t - killed) * 1000  # noqa: E731
    return ms(synced), ms(serving), {
        "client_closed": first.closes(), "client_ended_ms": ms(client_ended), "client_attempts": attempts,
        "witness_closed": witness.closes(), "witness_ended_ms": ms(witness_ended),
        "witness_attempts": witness_attempts, "witness_joined_ms": ms(witness_again.joined_at),
    }


Trial = Callable[[HubProcess, HubProcess, str, str, int], Awaitable[tuple[float, float, dict[str, Any]]]]
KINDS: dict[str, Trial] = {"documents": documents_trial, "pages": pages_trial}
"""The kinds of room measured: each a trial function ``trial(a, b, entry, room, updates) ->
(synced_ms, serving_ms, notes)`` (see the module); ``notes`` go into the JSON line."""


async def main(args: argparse.Namespace) -> None:
    from balancer import start_haproxy
    from services import running, start_postgres, start_redis

    kinds = {k: KINDS[k] for k in args.kinds.split(",")}
    heartbeat = args.heartbeat if args.heartbeat is not None else args.lease / 5
    times: dict[str, dict[str, list[float]]] = {k: {"synced": [], "serving": []} for k in kinds}
    notes: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    with contextlib.ExitStack() as stack:
        redis_server = stack.enter_context(running("roomhub-bench-redis-", start_redis))
        pg = stack.enter_context(running("roomhub-bench-postgres-", start_postgres))
        toml = config(redis_server.url, pg.dsn(), args.lease, heartbeat)
        b = stack.enter_context(HubProcess(toml))
        view = await cluster_view(b)
        lease, heartbeat = view["lease_seconds"], view["heartbeat_seconds"]  # as the hubs have them
        a_port = free_port()
        entry = b.ws
        if not args.direct:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="roomhub-bench-haproxy-")))
            balancer = start_haproxy(tmp, [a_port, b.port])
            stack.callback(balancer.stop)
            entry = balancer.ws
        for trial in range(args.trials):
            for kind, run in kinds.items():
                a = HubProcess(toml)
                a.port = a_port  # the port haproxy knows
                with a:
                    synced, serving, noted = await run(a, b, entry, f"failover-{trial}", args.updates)
                times[kind]["synced"].append(synced)
                times[kind]["serving"].append(serving)
                notes[kind].append(noted)
                extra = "".join(f", {k} {v:.1f}" if isinstance(v, float) else f", {k} {v}"
                                for k, v in noted.items())
                print(f"trial {trial} {kind}: synced {synced:.1f} ms, serving {serving:.1f} ms{extra}",
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
                  "lease_seconds": lease, "heartbeat_seconds": heartbeat,
                  "notes": {k: v for k, v in notes.items() if any(v)},
                  "through": "direct" if args.direct else "haproxy", **where})
    if notes.get("pages"):
        pages = notes["pages"]
        joined = sorted(n["witness_joined_ms"] for n in pages)
        retried = sum(n["client_attempts"] + n["witness_attempts"] - 2 for n in pages)
        print(f"pages: the witness on hub B closed with {_tally(n['witness_closed'] for n in pages)} "
              f"(after {max(n['witness_ended_ms'] for n in pages):.1f} ms at most), the client on hub A "
              f"with {_tally(n['client_closed'] for n in pages)}; the witness joined again on hub B "
              f"after p50 {percentile(joined, 50):.1f} ms, max {joined[-1]:.1f} ms; reconnections "
              f"closed before they joined: {retried}")
    print(f"from SIGKILL of a hub to its room serving again on the other, {args.trials} trials, "
          f"through {'no balancer' if args.direct else 'haproxy'}; [cluster] lease_seconds = {lease}, "
          f"heartbeat_seconds = {heartbeat}; the machine's {where['cpus']} cores "
          f"shared by 2 hubs, Redis, PostgreSQL{'' if args.direct else ', haproxy'} and this client; "
          f"load average {where['load_avg']}")


def _tally(values: Any) -> str:
    return ", ".join(f"{value} ({count}x)" for value, count in Counter(values).most_common())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20, help="kills per kind (default 20)")
    parser.add_argument("--updates", type=int, default=50,
                        help="acknowledged edits (documents) or stdin lines (pages) before each kill (50)")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help=f"the kinds of room measured, comma-separated (default {','.join(KINDS)})")
    parser.add_argument("--lease", type=float, default=5.0,
                        help="[cluster] lease_seconds (default 5.0, the hub's default)")
    parser.add_argument("--heartbeat", type=float, default=None,
                        help="[cluster] heartbeat_seconds (default: a fifth of the lease, 1.0 by default)")
    parser.add_argument("--direct", action="store_true",
                        help="no haproxy: the client reconnects straight to the other hub")
    arguments = parser.parse_args()
    unknown = set(arguments.kinds.split(",")) - set(KINDS)
    if unknown:
        parser.error(f"unknown kinds: {', '.join(sorted(unknown))} (known: {', '.join(KINDS)})")
    asyncio.run(main(arguments))
