"""The sans-I/O protocol module against pycrdt's own encoders and hand-made frames."""

from __future__ import annotations

import json

import pytest
from pycrdt import (
    Awareness,
    Doc,
    Text,
    create_awareness_message,
    create_sync_message,
    create_update_message,
)

from roomhub.documents import protocol as p


def test_decodes_what_pycrdt_encodes():
    doc = Doc()
    doc.get("t", type=Text).insert(0, "hé")
    assert p.decode(create_sync_message(doc)) == p.SyncStep1(doc.get_state())
    assert p.decode(create_update_message(doc.get_update())) == p.SyncUpdate(doc.get_update())
    assert p.decode(p.sync_step2(b"\x00\x00")) == p.SyncStep2(b"\x00\x00")
    awareness = Awareness(doc)
    awareness.set_local_state({"user": "zoé"})
    frame = create_awareness_message(awareness.encode_awareness_update([doc.client_id]))
    message = p.decode(frame)
    assert isinstance(message, p.AwarenessUpdate)
    (entry,) = message.entries
    assert entry.client_id == doc.client_id and json.loads(entry.state) == {"user": "zoé"}
    assert message.frame == frame


def test_encoded_frames_are_read_by_pycrdt():
    other = Doc()
    awareness = Awareness(other)
    frame = p.encode_awareness([(7, 3, '{"name":"ünï"}'), (8, 1, "null")])
    awareness.apply_awareness_update(frame[2:], "test")  # [1, len, payload]
    assert awareness.states[7] == {"name": "ünï"}
    assert p.decode(frame).entries[1].removed
    assert p.decode(p.KEEPALIVE) == p.AwarenessUpdate((), p.KEEPALIVE)
    assert p.decode(bytes([3])) == p.QueryAwareness()
    assert p.decode(p.permission_denied("read-only")) == p.Auth(0, "read-only")


@pytest.mark.parametrize(
    "frame, why",
    [
        (b"", "truncated varint"),
        (b"\x07", "unknown message type"),
        (b"\x00\x05\x00", "unknown sync message type"),
        (b"\x00\x02\x05ab", "runs past"),
        (b"\x00\x02\x01a\x00", "unexpected bytes"),
        (b"\x00" + b"\xff" * 11, "longer than 64 bits"),
        (b"\x01\x04\x01\x01\x01\x01", "runs past"),
        (b"\x01\x03\x01\x01\x80", "truncated varint"),
        (b"\x01\x05\x01\x01\x01\x01{", "not JSON"),
        (b"\x01\x02\x7f\x00", "claims 127 entries"),
        (b"\x01\x06\x01\x01\x01\x02\xff\xfe", "not valid UTF-8"),
    ],
)
def test_malformed_frames_raise_protocol_errors(frame, why):
    with pytest.raises(p.ProtocolError, match=why) as info:
        p.decode(frame)
    assert info.value.code == 1007


def test_sync_header_size_is_where_the_payload_starts():
    payload = bytes(300)  # a two-byte length
    frame = p.sync_step2(payload)
    assert frame[p.sync_header_size(frame):] == payload
    assert p.sync_header_size(p.sync_step1(b"\x00")) == 3


def test_join_keeps_frames_until_joined_then_hands_them_over_in_order():
    join = p.Join()
    assert join.phase is p.JoinPhase.JOINING
    frames = [p.sync_step1(b"\x00"), p.encode_awareness([(1, 1, "{}")])]
    assert [join.receive(f) for f in frames] == [False, False]
    assert join.joined(writable=False) == frames
    assert join.phase is p.JoinPhase.JOINED and join.writable is False
    assert join.receive(frames[0]) is True  # handled at once from now on, nothing kept
    assert join.leave() is True
    assert join.receive(frames[0]) is False and join.phase is p.JoinPhase.LEFT


def test_join_without_early_frames_hands_over_nothing():
    join = p.Join()
    assert join.joined(writable=True) == [] and join.writable is True


def test_join_refuses_text_frames_in_any_phase_but_left():
    join = p.Join()
    with pytest.raises(p.ProtocolError) as joining:
        join.receive("hello")
    assert joining.value.code == 1003
    join.joined(True)
    with pytest.raises(p.ProtocolError) as joined:
        join.receive("hello")
    assert joined.value.code == 1003
    join.leave()
    assert join.receive("hello") is False


def test_join_bounds_the_frames_kept_while_joining():
    join = p.Join()
    for _ in range(p.MAX_EARLY_FRAMES):
        assert join.receive(b"\x03") is False
    with pytest.raises(p.ProtocolError) as exc:
        join.receive(b"\x03")
    assert exc.value.code == 1008
    assert len(join.joined(True)) == p.MAX_EARLY_FRAMES


def test_join_that_left_while_joining_is_not_a_member_and_cannot_join():
    join = p.Join()
    join.receive(b"\x03")
    assert join.leave() is False  # never joined: no room to leave
    assert join.phase is p.JoinPhase.LEFT
    with pytest.raises(RuntimeError):
        join.joined(True)
