"""A document room served by several hubs at once (replication over Redis pub/sub, the store in
PostgreSQL), through real hub processes, a real Redis, a real PostgreSQL and pycrdt y-websocket
clients: edits on two hubs converge both ways, a hub joining later gets the whole document, no
update comes back to the hub that published it, a hub killed with SIGKILL before its store commit
loses nothing, and a Redis restart that loses every stream while clients edit ends converged."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import httpx
import pytest
import redis.asyncio as redis
from pycrdt import Array, Doc, Text, get_update

from documents.ycl import y_client
from hubtest import HubProcess, eventually, free_port, write_config
from services import running, start_redis

PREFIX = "it"


def config(directory: Path, redis_url: str, dsn: str, commit_window: float = 0.01) -> Path:
    return write_config(directory, f"""
        [documents]
        store = "postgres"
        grace_period = 30
        [documents.postgres]
        dsn = "{dsn}"
        commit_window = {commit_window}
        [cluster]
        redis = "{redis_url}"
        prefix = "{PREFIX}"
        lease_seconds = 1.5
        heartbeat_seconds = 0.2
    """)


def items(doc: Doc) -> list:
    return doc.get("arr", type=Array).to_py()


async def view(hub: HubProcess, room: str) -> list:
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{hub.base}/api/documents/{room}")
    return answer.json().get("content", {}).get("arr", []) if answer.status_code == 200 else []


def varuint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def carries(update: bytes, client_id: int) -> bool:
    """Whether ``update`` carries structs of Yjs client ``client_id``: dropping everything below
    a state vector giving that client alone a huge clock changes its encoding."""
    only_client = varuint(1) + varuint(client_id) + varuint(2**40)
    return get_update(update, only_client) != get_update(update, b"\x00")


async def stream_entries(redis_url: str, room: str) -> list[dict[bytes, bytes]]:
    async with redis.Redis.from_url(redis_url) as client:
        return [fields for _, fields in await client.xrange(f"{PREFIX}:doc:{room}")]


@contextlib.asynccontextmanager
async def channel_messages(redis_url: str, room: str):
    """Every message published on ``room``'s channel meanwhile, as ``(run id, kind, payload)``."""
    seen: list[tuple[str, bytes, bytes]] = []
    async with redis.Redis.from_url(redis_url) as client, client.pubsub() as pubsub:
        await pubsub.subscribe(f"{PREFIX}:live:{room}")

        async def listen() -> None:
            async for message in pubsub.listen():
                if message["type"] == "message":
                    origin, _, rest = message["data"].partition(b"|")
                    seen.append((origin.decode(), rest[:1], rest[1:]))

        task = asyncio.create_task(listen())
        try:
            yield seen
        finally:
            await asyncio.sleep(0.2)  # the last ones on their way
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def run_of(hub: HubProcess) -> str:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{hub.base}/api/cluster")).json()["run"]


async def append_slowly(doc: Doc, prefix: str, count: int, pause: float = 0.005) -> None:
    arr = doc.get("arr", type=Array)
    for i in range(count):
        arr.append(f"{prefix}{i}")
        await asyncio.sleep(pause)


async def test_two_hubs_converge_both_ways_a_late_hub_gets_all_and_nothing_echoes(
    tmp_path, redis_url, postgres_dsn, hub_process
):
    conf = config(tmp_path / "conf", redis_url, postgres_dsn)
    a_hub, b_hub = (hub_process(conf, "--data-dir", str(tmp_path / n)) for n in ("a", "b"))
    async with (channel_messages(redis_url, "shared") as messages,
                y_client(a_hub.ws, "shared") as a, y_client(b_hub.ws, "shared") as b):
        # one round each way first: from then on every hub has read the other's state request
        b.doc.get("arr", type=Array).append("b-first")
        await eventually(lambda: items(a.doc) == ["b-first"], what="b's first item on hub a")
        a.doc.get("arr", type=Array).append("a-first")
        await eventually(lambda: len(items(b.doc)) == 2, what="a's first item on hub b")
        await asyncio.gather(append_slowly(a.doc, "a", 60), append_slowly(b.doc, "b", 60))
        await eventually(lambda: len(items(a.doc)) == len(items(b.doc)) == 122, within=20,
                         what="both clients to hold all 122 items")
        assert items(a.doc) == items(b.doc)
        expected = sorted(items(a.doc))
        assert expected == sorted(["a-first", "b-first", *(f"{t}{i}" for t in "ab" for i in range(60))])
        # a third hub, started now, gets the whole document
        c_hub = hub_process(conf, "--data-dir", str(tmp_path / "c"))
        async with y_client(c_hub.ws, "shared") as c:
            assert sorted(items(c.doc)) == expected
            # and, connected, what is written next
            a.doc.get("arr", type=Array).append("late")
            await eventually(lambda: "late" in items(c.doc), what="a later item on hub c")
    # No echo, no amplification: a hub publishes updates its own clients made, once each;
    # nothing it received comes back from it, on the document's channel or in its stream.
    runs = {await run_of(h): client for h, client in ((a_hub, a), (b_hub, b), (c_hub, None))}
    entries = await stream_entries(redis_url, "shared")
    stored = [(f[b"o"].decode(), b"u" if b"u" in f else b"s", f.get(b"u") or f[b"s"]) for f in entries]
    for run in runs:  # the same updates, in each hub's order (hubs interleave as Redis saw them)
        assert [m for m in messages if m[0] == run and m[1] in (b"u", b"s")] == [
            m for m in stored if m[0] == run]
    published: dict[str, int] = dict.fromkeys(runs, 0)
    for run, kind, payload in messages:
        assert run in runs
        if kind == b"u":
            published[run] += 1
            client = runs[run]
            assert client is not None, "hub c, whose client wrote nothing, published an update"
            others = [c.doc.client_id for c in (a, b) if c is not client]
            assert carries(payload, client.doc.client_id)
            assert not any(carries(payload, other) for other in others), (
                f"hub {run} sent back what it received from another hub")
    assert 0 < published[await run_of(b_hub)] <= 61
    assert 0 < published[await run_of(a_hub)] <= 62
    # each hub asked once, at opening; answers (what a hub lacked) carry anybody's structs
    assert sum(kind == b"q" for _, kind, _ in messages) == 3
    assert {kind for _, kind, _ in messages} <= {b"u", b"q", b"s", b"a"}


async def test_a_hub_killed_before_its_commit_loses_nothing(tmp_path, redis_url, postgres_dsn, hub_process):
    """Hub a commits to PostgreSQL only every 5 s and is killed with SIGKILL once hub b holds its
    client's items: b stores them when it closes the room, and a's client, reconnecting to b with
    its document, finds it whole."""
    slow = config(tmp_path / "slow", redis_url, postgres_dsn, commit_window=5)
    conf = config(tmp_path / "conf", redis_url, postgres_dsn)
    a_hub = hub_process(slow, "--data-dir", str(tmp_path / "a"))
    b_hub = hub_process(conf, "--data-dir", str(tmp_path / "b"))
    doc = Doc()
    expected = [f"a{i}" for i in range(80)]
    async with y_client(b_hub.ws, "notes") as b:
        async with y_client(a_hub.ws, "notes", doc=doc):
            await append_slowly(doc, "a", 80, pause=0.001)
            # acknowledged: the other hub holds every item
            await eventually(lambda: items(b.doc) == expected, within=20, what="hub b to hold a's items")
            a_hub.stop(signal.SIGKILL)
        async with y_client(b_hub.ws, "notes", doc=doc) as again:  # a's client reconnects to hub b
            again.doc.get("arr", type=Array).append("after")
            await eventually(lambda: items(b.doc) == [*expected, "after"],
                             what="the reconnected client's edit")
    b_hub.stop(signal.SIGTERM)  # closes the room: its copy is stored
    fresh = hub_process(conf, "--data-dir", str(tmp_path / "fresh"))
    async with y_client(fresh.ws, "notes") as reader:
        assert items(reader.doc) == [*expected, "after"]


async def test_redis_restarted_while_clients_edit_the_hubs_converge(tmp_path, postgres_dsn, hub_process):
    """The Redis (no persistence) is stopped and started again on its port while a client on each
    hub edits: the streams are lost with it, and the hubs' state requests after it returns bring
    each other what they lack."""
    port = free_port()
    with running("roomhub-redis-", lambda folder: start_redis(folder, port)) as server:
        conf = config(tmp_path / "conf", server.url, postgres_dsn)
        a_hub, b_hub = (hub_process(conf, "--data-dir", str(tmp_path / n)) for n in ("a", "b"))
        async with y_client(a_hub.ws, "shared") as a, y_client(b_hub.ws, "shared") as b:
            a.doc.get("arr", type=Array).append("start")
            await eventually(lambda: items(b.doc) == ["start"], what="the first item on hub b")

            async def restart() -> None:
                await asyncio.sleep(0.3)
                server.stop()
                await asyncio.sleep(1.0)  # edits go on meanwhile, replicated nowhere
                server.proc = (await asyncio.to_thread(start_redis, server.folder, port)).proc

            await asyncio.gather(append_slowly(a.doc, "a", 150, 0.01), append_slowly(b.doc, "b", 150, 0.01),
                                 restart())
            await eventually(lambda: len(items(a.doc)) == len(items(b.doc)) == 301, within=30,
                             what="both clients to hold all 301 items after the restart")
            assert items(a.doc) == items(b.doc)
            assert "Redis reachable again; resyncing" in a_hub.log()
            # and replication goes on as before
            b.doc.get("arr", type=Array).append("end")
            await eventually(lambda: "end" in items(a.doc), what="a last item")


async def test_awareness_reaches_the_members_of_other_hubs_and_so_does_its_removal(
    tmp_path, redis_url, postgres_dsn, hub_process
):
    from websockets.asyncio.client import connect

    from roomhub.documents import protocol as p

    conf = config(tmp_path / "conf", redis_url, postgres_dsn)
    a_hub, b_hub = (hub_process(conf, "--data-dir", str(tmp_path / n)) for n in ("a", "b"))

    async def states_seen(ws, want, within: float = 10) -> None:
        async def match() -> bool:
            while True:
                message = p.decode(await ws.recv())
                if isinstance(message, p.AwarenessUpdate) and any(want(e) for e in message.entries):
                    return True
        await asyncio.wait_for(match(), within)

    async with connect(f"{b_hub.ws}/yjs/presence") as b:
        await b.send(p.sync_step1(p.EMPTY_STATE_VECTOR))
        async with connect(f"{a_hub.ws}/yjs/presence") as a:
            await a.send(p.sync_step1(p.EMPTY_STATE_VECTOR))
            # a's hub subscribes to the room's channel as it opens the room: b's state, renewed
            # until it arrives (as a y-websocket client renews it), reaches a from then on
            for clock in range(1, 40):
                await b.send(p.encode_awareness([(7, clock, '{"user":"b"}')]))
                with contextlib.suppress(TimeoutError):
                    await states_seen(a, lambda e: e.client_id == 7 and not e.removed, within=0.25)
                    break
            else:
                raise AssertionError("b's awareness state never reached the client on the other hub")
            await a.send(p.encode_awareness([(42, 1, '{"user":"a"}')]))
            await states_seen(b, lambda e: e.client_id == 42 and e.state == '{"user":"a"}')
        # a's connection ended: its hub removes its state, everywhere
        await states_seen(b, lambda e: e.client_id == 42 and e.removed)


@pytest.mark.parametrize("kinds", [("pubsub", "normal"), ("pubsub",)], ids=["all", "subscriptions"])
async def test_connections_to_redis_dropped_while_clients_edit_lose_nothing(
    tmp_path, redis_url, postgres_dsn, hub_process, kinds
):
    """Redis keeps its streams but closes the hubs' connections (every one, or the subscriptions
    alone: redis-py reconnects and subscribes again without an error), five times, while a client
    on each hub edits: what was published while a hub's subscription was down comes by the resync
    (state vectors exchanged), and both end with all."""
    conf = config(tmp_path / "conf", redis_url, postgres_dsn)
    a_hub, b_hub = (hub_process(conf, "--data-dir", str(tmp_path / n)) for n in ("a", "b"))
    async with y_client(a_hub.ws, "shared") as a, y_client(b_hub.ws, "shared") as b:

        async def drop_connections() -> None:
            async with redis.Redis.from_url(redis_url) as admin:
                for _ in range(5):
                    await asyncio.sleep(0.2)
                    for kind in kinds:
                        await admin.client_kill_filter(_type=kind, skipme=True)

        await asyncio.gather(append_slowly(a.doc, "a", 100, 0.01), append_slowly(b.doc, "b", 100, 0.01),
                             drop_connections())
        await eventually(lambda: len(items(a.doc)) == len(items(b.doc)) == 200, within=30,
                         what="both clients to hold all 200 items")
        assert items(a.doc) == items(b.doc)
    assert "Redis reachable again; resyncing 1 document(s)" in a_hub.log() + b_hub.log()


async def test_another_hubs_updates_waiting_for_lost_ones_do_not_close_a_member(
    tmp_path, redis_url, postgres_dsn, hub_process
):
    """More of another hub's updates than MAX_WAITING wait for one Redis lost (published while
    this hub's subscription was down): the member who edits meanwhile stays connected, and the
    lost update, when it comes, completes the document."""
    from documents.ycl import typed_updates
    from roomhub.documents.room import MAX_WAITING

    hub = hub_process(config(tmp_path / "conf", redis_url, postgres_dsn))
    updates, text = typed_updates(MAX_WAITING + 6, key="t")  # each builds on the one before
    channel = f"{PREFIX}:live:gaps"
    async with y_client(hub.ws, "gaps") as member, redis.Redis.from_url(redis_url) as other_hub:
        async def subscribed() -> bool:
            return (await other_hub.pubsub_numsub(channel))[0][1] > 0

        await eventually(subscribed, what="the hub subscribed to the room's channel")
        for update in updates[1:]:  # the first is lost: every other one waits for it
            await other_hub.publish(channel, b"elsewhere|u" + update)
        for i in range(5):
            member.doc.get("arr", type=Array).append(f"m{i}")
            await asyncio.sleep(0.05)
        await other_hub.publish(channel, b"elsewhere|u" + updates[0])
        await eventually(lambda: str(member.doc.get("t", type=Text)) == text,
                         what="the member to hold the other hub's text")
        assert items(member.doc) == [f"m{i}" for i in range(5)]
    assert "closing (1008)" not in hub.log()
    async with y_client(hub.ws, "gaps") as joiner:
        assert str(joiner.doc.get("t", type=Text)) == text
        assert items(joiner.doc) == [f"m{i}" for i in range(5)]


def test_stream_length_is_validated_with_its_key():
    from roomhub.config import ConfigError, parse_config

    cluster = {"redis": "redis://127.0.0.1:6379/0"}
    assert parse_config({"cluster": cluster}).cluster.stream_length == 1000
    with pytest.raises(ConfigError, match=r"cluster\.stream_length"):
        parse_config({"cluster": {**cluster, "stream_length": 5}})


def test_a_batch_publishes_each_document_s_updates_as_one_message():
    from roomhub.documents.replication import coalesced

    doc, updates = Doc(), []
    array = doc.get("items", type=Array)
    for i in range(3):
        before = doc.get_state()
        array.append(i)
        updates.append(get_update(doc.get_update(), before))
    other = Doc()
    other.get("items", type=Array).append("y")
    batch = [(b"s:x", b"c:x", b"u", updates[0]), (None, b"c:x", b"q", b"\x00"),
             (b"s:y", b"c:y", b"u", other.get_update()), (b"s:x", b"c:x", b"u", updates[1]),
             (None, b"c:x", b"a", b"aw"), (b"s:x", b"c:x", b"u", updates[2])]
    result = coalesced(batch)
    assert [(m[1], m[2]) for m in result] == [(b"c:x", b"u"), (b"c:x", b"q"), (b"c:y", b"u"), (b"c:x", b"a")]
    assert result[0][0] == b"s:x" and result[1:] == [batch[1], batch[2], batch[4]]
    copy = Doc()
    copy.apply_update(result[0][3])  # the three updates in one
    assert copy.get("items", type=Array).to_py() == [0, 1, 2]
    assert coalesced(batch[:1]) == batch[:1]  # one update: as it was
