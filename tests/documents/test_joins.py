"""Joins answered from the document's kept encoding: the same bytes while nothing changes, the
new state after a change, and a compacted document's stored row as it is after a cold load."""

from __future__ import annotations

from pycrdt import Doc, Text
from websockets.asyncio.client import connect

from hubtest import eventually
from roomhub.documents import protocol as p

from .ycl import y_client


async def _sync_steps(
    ws_base: str, room: str, state_vector: bytes = p.EMPTY_STATE_VECTOR
) -> tuple[bytes, bytes]:
    """Join ``room`` as a raw y-websocket client with ``state_vector``: the hub's sync step 1
    (its state vector) and its answer to ours (the update), in whichever order they came."""
    step1 = step2 = None
    async with connect(f"{ws_base}/yjs/{room}", max_size=None) as ws:
        await ws.send(p.sync_step1(state_vector))
        while step1 is None or step2 is None:
            message = p.decode(await ws.recv())
            if isinstance(message, p.SyncStep1):
                step1 = message.state_vector
            elif isinstance(message, p.SyncStep2):
                step2 = message.update
    return step1, step2


async def _sync_step2(ws_base: str, room: str, state_vector: bytes = p.EMPTY_STATE_VECTOR) -> bytes:
    """Join ``room`` as a raw y-websocket client with ``state_vector``; the update of the answer."""
    return (await _sync_steps(ws_base, room, state_vector))[1]


async def _write_numbers(h, room: str, rows_each: bool) -> str:
    """Write "0;" to "19;" into ``room``'s text from a client; the text once the room has it.
    ``rows_each``: each edit stored before the next (a row each, not one merged row)."""
    face = h.hub.face("documents")
    async with y_client(h.ws, room) as writer:
        text = writer.doc.get("text", type=Text)
        for i in range(20):
            text += f"{i};"
            if rows_each:
                written = str(text)
                await eventually(lambda w=written: face.get_room(room).to_json().get("text") == w)
                await face.store.flush()
        expected = str(text)
        await eventually(lambda: face.get_room(room).to_json().get("text") == expected)
    return expected


def _text(update: bytes) -> str:
    doc = Doc()
    doc.apply_update(update)
    return str(doc.get("text", type=Text))


async def test_joins_share_the_kept_state_until_a_change(docs_config, in_process_hub):
    async with in_process_hub(docs_config(grace_period=30)) as h:
        async with y_client(h.ws, "kept") as writer:
            text = writer.doc.get("text", type=Text)
            text += "one;"
            room = h.hub.face("documents").get_room("kept")
            await eventually(lambda: room.to_json().get("text") == "one;")
            first = await _sync_step2(h.ws, "kept")
            second = await _sync_step2(h.ws, "kept")
            assert first == second and _text(first) == "one;"
            text += "two;"
            await eventually(lambda: room.to_json().get("text") == "one;two;")
            third = await _sync_step2(h.ws, "kept")
            assert _text(third) == "one;two;"
            # a client that has part of the document gets only what it misses
            partial = Doc()
            partial.apply_update(first)
            missing = await _sync_step2(h.ws, "kept", partial.get_state())
            assert len(missing) < len(third)
            partial.apply_update(missing)
            assert str(partial.get("text", type=Text)) == "one;two;"
            assert h.hub.face("documents").get_room("kept").size() == len(room.doc.get_update())


async def test_a_compacted_document_is_answered_with_its_stored_row(docs_config, in_process_hub):
    async with in_process_hub(docs_config(grace_period=0)) as h:
        face = h.hub.face("documents")
        expected = await _write_numbers(h, "cold", rows_each=False)
        await eventually(lambda: face.get_room("cold") is None, what="eviction")

        async def compacted() -> list[bytes] | None:
            rows = await face.store.load("cold")
            return rows if len(rows) == 1 else None

        rows = await eventually(compacted, what="the compaction at eviction")
        answer = await _sync_step2(h.ws, "cold")
        assert answer == rows[0] and _text(answer) == expected


async def test_a_cold_join_decodes_nothing_and_the_first_change_sees_the_whole_document(
    docs_config, in_process_hub
):
    """A room loaded from a snapshot answers a joiner from the row without decoding it into its
    Doc; the document is decoded on its first use, and a change then builds on all of it."""
    async with in_process_hub(docs_config(grace_period=30)) as h:
        face = h.hub.face("documents")
        expected = await _write_numbers(h, "lazy", rows_each=True)  # compacted to a snapshot
        await face.rooms.drop("lazy", 1001, "evicted")  # torn down now: flushed and compacted
        assert len(await face.store.load("lazy")) == 1
        assert _text(await _sync_step2(h.ws, "lazy")) == expected
        room = face.get_room("lazy")
        assert room._cold is not None, "the cold join decoded the document"
        async with y_client(h.ws, "lazy") as editor:
            assert str(editor.doc.get("text", type=Text)) == expected
            editor.doc.get("text", type=Text).insert(0, "!")
            await eventually(lambda: room.to_json().get("text") == "!" + expected)
        assert room._cold is None


async def test_joins_get_the_kept_framed_state_of_any_size_up_to_date(docs_config, in_process_hub):
    """The answer to a client that has nothing is kept framed as one WebSocket message: joins
    share that very message until a change, and get the new state after one, at each of the
    frame header's length sizes (RFC 6455 section 5.2: 7, 16 and 64 bits), warm and cold."""
    async with in_process_hub(docs_config(grace_period=30)) as h:
        face = h.hub.face("documents")
        async with y_client(h.ws, "sizes") as writer:
            text = writer.doc.get("text", type=Text)
            room = face.get_room("sizes")
            for chunk in ("a" * 50, "b" * 300, "c" * 70_000):
                text += chunk
                expected = str(text)
                await eventually(lambda e=expected: room.to_json().get("text") == e)
                first = await _sync_step2(h.ws, "sizes")
                kept = room._step2
                assert kept is not None and bytes(kept.payload) == p.sync_step2(first)
                assert _text(first) == expected
                second = await _sync_step2(h.ws, "sizes")
                assert second == first and room._step2 is kept  # framed once for both joins
            assert room.size() == len(room.doc.get_update())
        await face.rooms.drop("sizes", 1001, "evicted")  # flushed and compacted: a snapshot row
        assert _text(await _sync_step2(h.ws, "sizes")) == expected  # cold: the row, framed
        assert face.get_room("sizes").snapshot() == (await face.store.load("sizes"))[0]


async def test_the_hubs_sync_step1_names_the_state_it_answers_with_warm_and_cold(
    docs_config, in_process_hub
):
    """The hub's sync step 1 is made after the turn that joins (a cold document's answer leaves
    first): it still names the very state the joiner was sent, it is the same kept frame for
    the next joiner, and a joiner gone before it is made costs the room nothing."""
    async with in_process_hub(docs_config(grace_period=30)) as h:
        face = h.hub.face("documents")
        expected = await _write_numbers(h, "steps", rows_each=True)
        for state in ("warm", "cold"):
            if state == "cold":
                await face.rooms.drop("steps", 1001, "evicted")  # a snapshot row, loaded again
            # gone at once: its step 1 finds it no longer a member
            async with connect(f"{h.ws}/yjs/steps") as ws:
                await ws.send(p.sync_step1(p.EMPTY_STATE_VECTOR))
            state_vector, update = await _sync_steps(h.ws, "steps")
            doc = Doc()
            doc.apply_update(update)
            assert str(doc.get("text", type=Text)) == expected, state
            assert state_vector == doc.get_state(), state
            room = face.get_room("steps")
            assert room._step1_frame == p.sync_step1(state_vector)  # kept for the next joiner
            assert await _sync_steps(h.ws, "steps") == (state_vector, update)
