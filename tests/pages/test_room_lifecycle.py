"""A page's rooms through real WebSocket clients against a real hub on loopback: late joiners'
state, error frames for bad input, bad room names (the rooms themselves: tests/core/test_rooms.py)."""

from __future__ import annotations

import base64
import json

import pytest
import websockets

from pageclient import PageClient, monitor_contents
from pageclient import rooms_config as config


async def test_late_joiner_gets_scrollback_once_state_and_file(tmp_path, in_process_hub):
    extra = """
[pages."/p".executors.job]
type = "once"
command = ["sh", "-c", "echo job-output; exit 4"]
[pages."/p".executors.notes]
type = "file"
path = "notes.txt"
initial = "initial notes"
"""
    async with in_process_hub(config(tmp_path, extra)) as hub:
        a = await PageClient.connect(f"{hub.ws}/p/ws?roomName=late")
        await a.stdin("cat", "early-line\n")
        await a.wait_output("cat", b"early-line")
        await a.send("job")
        done = await a.wait_type("job", "finished")
        assert done["message"]["exitCode"] == 4
        b = await PageClient.connect(f"{hub.ws}/p/ws?roomName=late")
        await b.wait_output("cat", b"early-line")
        await b.wait_output("job", b"job-output")
        state = await b.wait_type("job", "state")
        assert state["message"] == {"type": "state", "kind": "once", "running": False, "exitCode": 4}
        notes = await b.wait_for(lambda f: f["executor"] == "notes" and monitor_contents(f) is not None)
        assert monitor_contents(notes) == b"initial notes"
        await a.close()
        await b.close()


async def test_bad_frames_get_error_frames_and_the_connection_stays(tmp_path, in_process_hub):
    async with in_process_hub(config(tmp_path)) as hub:
        c = await PageClient.connect(f"{hub.ws}/p/ws?roomName=bad")
        await c.wait_type(None, "joined")
        cases = [
            ("not json", "bad-json"),
            (json.dumps([1, 2]), "bad-frame"),
            (json.dumps({"message": 1}), "bad-frame"),
            (json.dumps({"executor": "nope", "message": None}), "unknown-executor"),
            (json.dumps({"executor": "cat", "message": {"stdin": "***"}}), "bad-message"),
            (json.dumps({"executor": "cat", "message": {"size": {"cols": -1, "rows": 5}}}), "bad-message"),
            (json.dumps({"executor": "log", "message": None}), "not-accepted"),
            (b"\x00binary", "binary-unsupported"),
        ]
        for frame, code in cases:
            await c.ws.send(frame)
            error = await c.wait_for(lambda f, code=code: f["message"].get("code") == code)
            assert error["message"]["type"] == "error" and error["message"]["message"]
        await c.stdin("cat", "still-alive\n")
        await c.wait_output("cat", b"still-alive")
        await c.close()


async def test_deeply_nested_json_is_bad_json_and_the_connection_stays(tmp_path, in_process_hub, caplog):
    notes = """
[pages."/p".executors.notes]
type = "file"
path = "notes.txt"
"""
    async with in_process_hub(config(tmp_path, notes, json_depth=8)) as hub:
        c = await PageClient.connect(f"{hub.ws}/p/ws?roomName=deep")
        await c.wait_type(None, "joined")
        await c.ws.send("[" * 1000 + "]" * 1000)
        error = await c.wait_for(lambda f: f["message"].get("type") == "error")
        assert error["message"]["code"] == "bad-json"
        assert "deeper than 8 levels" in error["message"]["message"]
        # server.limits.max_json_depth is the bound: 8 levels pass, 9 do not.
        await c.send("cat", {"stdin": base64.b64encode(b"ok\n").decode(), "pad": [[[[[[1]]]]]]})
        await c.wait_output("cat", b"ok")
        await c.send("cat", {"stdin": "", "pad": [[[[[[[1]]]]]]]})
        error = await c.wait_for(lambda f: f["message"].get("code") == "bad-json" and f is not error)
        # A monitor line of a file executor is JSON too.
        line = b'{"contents": "eA==", "x": ' + b"[" * 1000 + b"]" * 1000 + b"}\n"
        await c.send("notes", {"stdin": base64.b64encode(line).decode()})
        error = await c.wait_for(lambda f: f["executor"] == "notes" and f["message"].get("type") == "error")
        assert error["message"]["code"] == "bad-message"
        await c.stdin("cat", "still-alive\n")
        await c.wait_output("cat", b"still-alive")
        await c.close()
    assert "Traceback" not in caplog.text and "RecursionError" not in caplog.text


@pytest.mark.parametrize(
    "query", ["", "?roomName=", "?roomName=../x", "?roomName=" + "a" * 200, "?roomName=a%20b"]
)
async def test_bad_room_names_get_http_400(tmp_path, in_process_hub, query):
    async with in_process_hub(config(tmp_path)) as hub:
        with pytest.raises(websockets.InvalidStatus) as info:
            await websockets.connect(f"{hub.ws}/p/ws{query}", open_timeout=5)
        assert info.value.response.status_code == 400
        assert b"room name" in info.value.response.body


