"""Sans-I/O parts of the actions face: the protocol codec, the file server."""

from __future__ import annotations

import json
import os

import pytest

from roomhub.actions import protocol as p
from roomhub.actions.files import FileAccessError, FileServer, split_path


def test_decode_a_call_cancel_and_introduce():
    assert p.decode('{"streamId":"a","action":"x","data":[1]}') == p.Call("a", "x", [1])
    assert p.decode('{"streamId":"a","action":"x"}') == p.Call("a", "x", None)
    assert p.decode('{"streamId":"a","cancel":true}') == p.Cancel("a")
    assert p.decode(
        '{"streamId":"i","action":"introduce_self","data":{"client_id":"c","token":"t"}}'
    ) == p.Introduce("i", "c", "t")


@pytest.mark.parametrize(
    ("frame", "code", "message", "sid"),
    [
        (b"\x00", p.UNSUPPORTED, "binary", None),
        ("{", p.BAD_REQUEST, "not JSON", None),
        ("null", p.BAD_REQUEST, "JSON object", None),
        ('{"action":"x"}', p.BAD_REQUEST, "No streamId specified", None),
        ('{"streamId":5,"action":"x"}', p.BAD_REQUEST, "streamId must be a string", None),
        ('{"streamId":"' + "s" * 300 + '","action":"x"}', p.BAD_REQUEST, "at most", None),
        ('{"streamId":"a"}', p.BAD_REQUEST, "No action specified", "a"),
        ('{"streamId":"a","action":7}', p.BAD_REQUEST, "action must be a string", "a"),
        (
            '{"streamId":"a","action":"introduce_self","data":{}}',
            p.BAD_REQUEST,
            "No client_id",
            "a",
        ),
        (
            '{"streamId":"a","action":"introduce_self","data":{"client_id":"' + "c" * 257 + '"}}',
            p.BAD_REQUEST,
            "client_id must be at most 256",
            "a",
        ),
    ],
)
def test_decode_refuses_bad_frames(frame, code, message, sid):
    with pytest.raises(p.ProtocolError) as info:
        p.decode(frame)
    assert info.value.code == code and message in info.value.message and info.value.stream_id == sid


def test_additions_are_asked_for_with_roomhub_1():
    assert p.wants_additions(None) is False and p.wants_additions("1") is True
    with pytest.raises(p.ProtocolError) as info:
        p.wants_additions("yes")
    assert info.value.code == p.BAD_REQUEST and "roomhub='yes'" in info.value.message


def test_encoders_give_igor_shapes():
    assert json.loads(p.data("s", {"a": 1})) == {"streamId": "s", "data": {"a": 1}}
    assert json.loads(p.error("s", "bad")) == {"streamId": "s", "error": "bad"}
    assert json.loads(p.close("s")) == {"streamId": "s", "close": True}
    assert json.loads(p.close("s", cancelled=True))["cancelled"] is True
    assert json.loads(p.protocol_error("x", 400)) == {"error": "x", "code": 400}
    assert json.loads(p.introduced("i", "desk", "s1", False)) == {
        "streamId": "i",
        "data": {"clientId": "desk", "sessionId": "s1", "resumed": False},
    }
    assert json.loads(p.process_message("pid", "tick", 3)) == {
        "streamId": "pid",
        "action": "tick",
        "data": 3,
    }
    with pytest.raises(ValueError):
        p.data("s", float("nan"))  # not valid JSON: refused rather than sent


@pytest.mark.parametrize("path", ["", "/etc/passwd", "..", "a/../b", "a//b", "./a", "a\\b", "a\x00b"])
def test_split_path_refuses(path):
    with pytest.raises(FileAccessError) as info:
        split_path(path)
    assert info.value.status == 400


def test_file_server_never_follows_symlinks(tmp_path):
    root = tmp_path / "root"
    files = FileServer(root, max_bytes=100)
    (tmp_path / "out").mkdir()
    os.symlink(tmp_path / "out", root / "d")
    os.symlink(root, root / "self")  # even a link that stays inside is not followed
    for call in (
        lambda: files.read("d/x"),
        lambda: files.write("d/x", b"1"),
        lambda: files.write("self/x", b"1"),
        lambda: files.delete("d"),
    ):
        with pytest.raises(FileAccessError) as info:
            call()
        assert info.value.status == 403
    assert list((tmp_path / "out").iterdir()) == []
    assert files.write("a/b.txt", b"ok") is True and files.read("a/b.txt") == b"ok"
