"""The sans-I/O parts: method kinds, the journal's replay, the protocol decoder."""

from __future__ import annotations

import itertools

import pytest

from roomhub.widgets import classes as C
from roomhub.widgets import protocol as p
from roomhub.widgets.journal import Journal


def test_method_kinds() -> None:
    assert C.classify("set_text") == C.MethodInfo("setter", "text")
    assert C.classify("get_text") == C.MethodInfo("getter", "text")
    assert C.classify("show") == C.MethodInfo("setter", "visible")
    assert C.classify("is_visible") == C.MethodInfo("getter", "visible")
    assert C.classify("append_row").kind == "item"
    assert C.classify("set_cell").kind == "item"
    assert C.classify("popup").kind == "action"


def test_journal_keeps_latest_setter_and_wipes_replaced_items() -> None:
    j = Journal()
    j.create(1, "TableView", [])
    j.create(2, "Label", ["a"])
    j.item(1, "append_row", [[1]])
    j.setter(2, "text", "set_text", ["b"])
    j.setter(2, "text", "set_text", ["c"])
    j.setter(1, "rows", "set_rows", [[[9]]], C.CONTENT_RESETS["set_rows"])
    j.item(1, "append_row", [[10]])
    j.listen(2, "click")
    msgs = list(j.messages(itertools.count(1)))
    assert [(m["type"], m.get("method") or m.get("class") or m.get("action")) for m in msgs] == [
        ("create", "TableView"),
        ("create", "Label"),
        ("call", "set_text"),
        ("call", "set_rows"),
        ("call", "append_row"),
        ("listen", "click"),
    ]
    assert msgs[2]["args"] == ["c"] and msgs[4]["args"] == [[10]]
    assert [m["id"] for m in msgs] == [1, 2, 3, 4, 5, 6]


def test_journal_forgets_destroyed_widgets_and_their_references() -> None:
    j = Journal()
    j.create(1, "VBox", [])
    j.create(2, "Button", ["x"])
    j.item(1, "add_widget", [{"__wid__": 2}, 0])
    j.listen(2, "activated")
    j.forget(2)
    assert [e.kind for e in j] == ["create"]


def test_decode_browser_messages() -> None:
    assert p.decode('{"type": "result", "id": 3, "value": 1}')[0] == p.Result(3, 1, {})
    assert p.decode('{"type": "callback", "wid": 2, "action": "activated", "args": [true]}') == [
        p.Callback(2, "activated", [True])
    ]
    out = p.decode('[{"type": "result", "id": 1}, {"type": "bogus"}]')
    assert isinstance(out[0], p.Result) and isinstance(out[1], p.ProtocolError)
    with pytest.raises(p.ProtocolError) as err:
        p.decode("{nope")
    assert err.value.code == p.BAD_JSON
    with pytest.raises(p.ProtocolError):
        p.decode(
            '{"type": "binary-chunk", "wid": 1, "transfer_id": 1, "file_index": 0, '
            '"file_count": 1, "chunk_index": 2, "num_chunks": 2}'
        )
