"""PreparedMessage.binary: a binary message framed from parts in one copy, the same bytes the
``websockets`` library frames."""

from __future__ import annotations

import pytest

from roomhub.transport.callback_websocket import PreparedMessage


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_a_message_framed_from_parts_is_the_librarys_frame_of_their_join(size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    a = min(3, size)
    b = max(a, size // 2)
    parts = (payload[:a], payload[a:b], payload[b:])
    prepared = PreparedMessage.binary(*parts)
    assert prepared.wire == PreparedMessage(payload).wire
    assert prepared.size == size and bytes(prepared.payload) == payload


def test_the_payload_of_a_text_message_is_its_utf8() -> None:
    assert bytes(PreparedMessage("é✓").payload) == "é✓".encode()
