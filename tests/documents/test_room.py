"""A document room driven directly (members that record what they are sent): the updates of one
turn of the loop."""

from __future__ import annotations

import asyncio

from roomhub.core.bus import LocalBus
from roomhub.documents import protocol as p
from roomhub.documents.room import DocumentContext, DocumentRoom
from roomhub.documents.stores import SQLiteStore
from roomhub.transport.callback_websocket import PreparedMessage

from .test_stores import edits, text_of


class Recorder:
    """A room member that keeps what it is sent and how it was closed."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.frames: list[bytes] = []
        self.closed: tuple[int, str] | None = None

    def send(self, frame) -> bool:
        self.frames.append(bytes(frame.payload if isinstance(frame, PreparedMessage) else frame))
        return True

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)


async def test_a_turns_updates_are_applied_together_and_a_bad_one_closes_its_sender_alone(tmp_path):
    """Updates members send in one turn of the loop are applied at its end, in order, and sent as
    one update; one that does not decode closes its sender (1007) and nothing else."""
    store = SQLiteStore(tmp_path / "d.sqlite3", commit_window=0.001)
    await store.open()
    try:
        bus = LocalBus()
        room = DocumentRoom("doc", DocumentContext(store), bus)
        await room.on_create()
        bus.subscribe(room.topic, room._deliver)
        good, bad = Recorder("good"), Recorder("bad")
        room.members.update((good, bad))
        updates, expected = edits(3)
        room.handle(good, p.sync_update(updates[0]))
        room.handle(bad, p.sync_update(b"\x01\x02\x03"))
        room.handle(good, p.sync_update(updates[1]))
        room.handle(good, p.sync_update(updates[2]))
        assert room.updates_applied == 0  # not before the end of the turn
        await asyncio.sleep(0)
        assert room.updates_applied == 3 and room.to_json()["text"] == expected
        assert bad.closed is not None and bad.closed[0] == 1007 and good.closed is None
        sent = [p.decode(f) for f in good.frames]
        assert len(sent) == 1 and text_of([sent[0].update]) == expected  # one update for the turn
        await room.on_teardown()
        assert text_of(await store.load("doc")) == expected
    finally:
        await store.close()
