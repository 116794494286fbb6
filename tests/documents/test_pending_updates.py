"""Updates a document cannot integrate yet are stored as received: a restart changes nothing.

An update whose structs skip ahead of the document's clock, or whose origin
has not arrived, waits in the document until the updates it depends on come.
Whatever a joiner is synced from before a restart (subprocess hub, SQLite
store, SIGTERM) must be what it is synced from after, and the waiting parts
must integrate after the restart as they would have without it.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from pycrdt import Doc, Map, Text, TransactionEvent, create_sync_message, create_update_message
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from roomhub.documents.room import MAX_WAITING
from roomhub.documents.stores import load_into, squash

from .ycl import typed_updates, y_client

# ``[0, 2, update]``: "hello" inserted in root text "t" by client 424247 at clock 5, whose
# clocks 0-4 the document never had.
SKIPPING_FRAME = bytes.fromhex("0002110101b7f21905040101740568656c6c6f00")


async def deliver(base_ws: str, room: str, frames: list[bytes]) -> None:
    """Send ``frames`` on one connection to ``/yjs/<room>``, then a sync step 1 whose answer
    proves the hub has handled them all (one connection's frames are handled in order)."""
    async with connect(f"{base_ws}/yjs/{room}", max_size=None) as ws:
        for frame in frames:
            await ws.send(frame)
        await ws.send(create_sync_message(Doc()))
        while True:
            message = await asyncio.wait_for(ws.recv(), 10)
            if isinstance(message, bytes) and message[:2] == b"\x00\x01":
                return


def view(doc: Doc) -> tuple[str, dict[str, object], bytes, bytes]:
    """What a client holds: its text, its map, its state vector and its whole encoded state."""
    return (str(doc.get("t", type=Text)), doc.get("m", type=Map).to_py() or {},
            doc.get_state(), doc.get_update())


async def joiner_view(base_ws: str, room: str) -> tuple[str, dict[str, object], bytes, bytes]:
    async with y_client(base_ws, room) as client:
        return view(client.doc)


async def test_an_update_skipping_ahead_is_stored_as_joiners_were_shown_it(docs_config, hub_process):
    config = docs_config(grace_period=30)  # the room is live at the stop: the stop stores it
    hub = hub_process(config)
    await deliver(hub.ws, "skip", [SKIPPING_FRAME])
    before = await joiner_view(hub.ws, "skip")
    assert before[0] == "hello"  # pycrdt shows the struct; the room's document holds it
    hub.stop()

    hub2 = hub_process(config)
    after = await joiner_view(hub2.ws, "skip")
    assert after == before


def shuffled_updates(seed: int) -> list[bytes]:
    """Updates of three writers editing one text and one map, each applying the others' updates
    now and then (so origins cross clients), in a shuffled order."""
    rng = random.Random(seed)
    writers = [Doc(client_id=1000 + seed * 10 + i) for i in range(3)]
    updates: list[bytes] = []

    def record(event: TransactionEvent) -> None:
        if event.update != b"\x00\x00":
            updates.append(event.update)

    for writer in writers:
        writer.observe(record)
    for step in range(30):
        writer = rng.choice(writers)
        text = writer.get("t", type=Text)
        if len(text) > 4 and rng.random() < 0.25:
            start = rng.randrange(len(text) - 2)
            del text[start:start + 2]
        elif rng.random() < 0.3:
            writer.get("m", type=Map)[f"k{rng.randrange(5)}"] = step
        else:
            text.insert(rng.randrange(len(text) + 1), f"<{step}>")
        if rng.random() < 0.5:  # writers see each other's changes now and then
            other = rng.choice(writers)
            other.apply_update(writer.get_update(other.get_state()))
    rng.shuffle(updates)
    return updates


async def test_too_many_waiting_updates_close_the_connection(docs_config, hub_process):
    hub = hub_process(docs_config())
    updates, text = typed_updates(MAX_WAITING + 2, key="t")  # each builds on the one before
    async with connect(f"{hub.ws}/yjs/waiting", max_size=None) as ws:
        await ws.recv()  # the hub's sync step 1: the room is ready
        for update in updates[1:]:  # the first never comes: every other one waits for it
            await ws.send(create_update_message(update))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert "wait" in closed.value.rcvd.reason
    # What was applied is kept: the missing update completes the document.
    await deliver(hub.ws, "waiting", [create_update_message(updates[0])])
    assert (await joiner_view(hub.ws, "waiting"))[0] == text


def test_squash_rebuilds_the_document_its_log_builds():
    """Compaction of a log whose updates arrived shuffled, a third of them missing, changes
    neither the document replaying it builds nor how the missing updates integrate later."""
    for seed in range(40):
        updates = shuffled_updates(seed)
        cut = len(updates) * 2 // 3
        log, rest = updates[:cut], updates[cut:]
        replayed, squashed = Doc(), Doc()
        load_into(replayed, log)
        load_into(squashed, squash(log))
        assert view(squashed) == view(replayed), f"seed {seed}"
        load_into(replayed, rest)
        load_into(squashed, rest)
        assert view(squashed)[:2] == view(replayed)[:2], f"seed {seed}"


async def test_shuffled_and_missing_updates_survive_a_restart(docs_config, hub_process):
    config = docs_config(grace_period=0.2)  # rooms are torn down (and compacted) before the stop
    hub = hub_process(config)
    seeds = range(6)
    held_back: dict[int, list[bytes]] = {}
    delivered: dict[int, list[bytes]] = {}
    before = {}
    for seed in seeds:
        updates = delivered[seed] = shuffled_updates(seed)
        cut = len(updates) * 2 // 3  # a third of the updates never reach the hub before the restart
        held_back[seed] = updates[cut:]
        await deliver(hub.ws, f"fuzz-{seed}", [create_update_message(u) for u in updates[:cut]])
        before[seed] = await joiner_view(hub.ws, f"fuzz-{seed}")
    hub.stop()

    hub2 = hub_process(config)
    for seed in seeds:
        room = f"fuzz-{seed}"
        assert await joiner_view(hub2.ws, room) == before[seed], f"seed {seed}"
        # The rest arrives: what was waiting integrates as in a document that never restarted,
        # one that applied the same updates in the same order.
        await deliver(hub2.ws, room, [create_update_message(u) for u in held_back[seed]])
        unbroken = Doc()
        for update in delivered[seed]:
            unbroken.apply_update(update)
        assert (await joiner_view(hub2.ws, room))[:2] == view(unbroken)[:2], f"seed {seed}"
