"""A client of interactive-widgets (one that does not ask for roomhub's additions) gets exactly the
frames interactive-widgets-backend sends; one that asks (``roomhub=1``) gets the additions too."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
import websockets

from hubtest import write_config
from pageclient import PageClient, monitor_contents

# What interactive-widgets-backend sends: {"executor": NAME, "message": {"type": ...}}.
ORIGINAL_TYPES = {"output", "started", "finished", "errored"}


def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "cfg", """
[pages."/x"]
html = "page.html"
[pages."/x".executors.setup]
type = "prologue"
command = ["sh", "-c", "echo prologue-ran"]
[pages."/x".executors.flaky]
type = "always"
command = ["sh", "-c", "echo run; exit 3"]
restart_delay = 0.05
restart_delay_max = 0.2
[pages."/x".executors.run]
type = "once"
command = ["sh", "-c", "echo ran; sleep 0.5; exit 5"]
[pages."/x".executors.doc]
type = "file"
path = "doc.txt"
initial = "v1"
""")


def assert_original(frames: list[dict]) -> None:
    """Every frame is one interactive-widgets-backend sends, in its shape."""
    assert frames
    for frame in frames:
        assert isinstance(frame["executor"], str), frame
        message = frame["message"]
        assert message["type"] in ORIGINAL_TYPES, frame
        if message["type"] == "finished":
            assert message == {"type": "finished"}, frame


def count(client: PageClient, type_: str) -> int:
    return sum(f["executor"] == "run" and f["message"]["type"] == type_ for f in client.frames)


async def test_an_old_client_gets_only_the_original_frames(tmp_path, in_process_hub):
    async with in_process_hub(config(tmp_path)) as hub:
        old = await PageClient.connect(f"{hub.ws}/x/ws?roomName=r", additions=False)
        new = await PageClient.connect(f"{hub.ws}/x/ws?roomName=r")
        # Join: the prologue's output, the file's contents and the restarts' output, no state.
        await old.wait_for(lambda f: f["executor"] == "doc" and monitor_contents(f) == b"v1")
        await old.wait_output("setup", b"prologue-ran")
        await old.wait_output("flaky", b"run\nrun\n")
        await new.wait_type(None, "joined")
        await new.wait_type("flaky", "state")
        await new.wait_type("flaky", "exited")
        await new.wait_type("flaky", "restarted")

        # A run, a second request while it runs, bad input: the old client sees the run only.
        await old.send("run")
        await old.send("run")
        await old.ws.send("not json")
        await old.send("nobody", {"stdin": "aGk="})
        await old.send("flaky", {"size": "large"})
        await old.wait_output("run", b"ran\n")
        await old.wait_type("run", "finished")
        finished = await new.wait_type("run", "finished")
        assert finished["message"]["exitCode"] == 5
        await new.send("run")
        await new.send("run")
        assert (await new.wait_type("run", "busy"))["message"]["message"] == "already running"
        await new.ws.send("not json")
        assert (await new.wait_type(None, "error"))["message"]["code"] == "bad-json"
        await new.wait_for(lambda f: count(new, "finished") == 2, timeout=15)

        # Still connected after its bad input: the next run is answered.
        await old.send("run")
        await old.wait_for(lambda f: count(old, "finished") == 3, timeout=15)
        await old.quiet(0.3)
        assert_original(old.frames)
        assert count(old, "started") == 3
        await old.close()
        await new.close()


async def test_a_late_old_client_gets_scrollback_and_files_as_output(tmp_path, in_process_hub):
    async with in_process_hub(config(tmp_path)) as hub:
        first = await PageClient.connect(f"{hub.ws}/x/ws?roomName=r")
        await first.send("run")
        await first.wait_type("run", "finished", timeout=15)
        late = await PageClient.connect(f"{hub.ws}/x/ws?roomName=r", additions=False)
        await late.wait_for(lambda f: f["executor"] == "doc" and monitor_contents(f) == b"v1")
        await late.wait_output("run", b"ran\n")
        await late.quiet(0.3)
        assert_original(late.frames)
        await first.close()
        await late.close()


async def test_an_unknown_roomhub_value_is_refused_with_400(tmp_path, in_process_hub):
    async with in_process_hub(config(tmp_path)) as hub:
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(f"{hub.ws}/x/ws?roomName=r&roomhub=2", open_timeout=10)
        assert refused.value.response.status_code == 400
        assert "roomhub='2'" in json.loads(refused.value.response.body)["detail"]
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{hub.base}/api/rooms")).json() == []


@pytest.mark.parametrize("additions", [False, True])
async def test_saving_unchanged_contents_is_answered_with_the_contents(tmp_path, in_process_hub, additions):
    """The monitor re-reads and sends after every write: interactive-widgets' editor stays locked
    until it hears back, also when the file did not change."""
    async with in_process_hub(config(tmp_path)) as hub:
        editor = await PageClient.connect(f"{hub.ws}/x/ws?roomName=r", additions=additions)
        viewer = await PageClient.connect(f"{hub.ws}/x/ws?roomName=r", additions=additions)
        for client in (editor, viewer):
            await client.wait_for(lambda f: f["executor"] == "doc" and monitor_contents(f) == b"v1")

        def contents_count(client: PageClient, value: bytes) -> int:
            return sum(monitor_contents(f) == value for f in client.frames if f["executor"] == "doc")

        for request in ({"contents": base64.b64encode(b"v1").decode()}, {"contents": ""}, {"contents": ""}):
            expected = base64.b64decode(request["contents"])
            before = {c: contents_count(c, expected) for c in (editor, viewer)}
            line = json.dumps(request) + "\n"
            await editor.send("doc", {"stdin": base64.b64encode(line.encode()).decode()})
            for client in (editor, viewer):
                await client.wait_for(
                    lambda f, c=client, e=expected, n=before[client]: contents_count(c, e) > n)
        # Deleting a file that is already gone is answered too (with the error).
        for _ in range(2):
            errors = sum(b'"error"' in base64.b64decode(f["message"].get("stdout", ""))
                         for f in editor.frames if f["executor"] == "doc")
            await editor.send("doc", {"delete": True})
            await editor.wait_for(lambda f, n=errors: sum(
                b'"error"' in base64.b64decode(g["message"].get("stdout", ""))
                for g in editor.frames if g["executor"] == "doc") > n)
        await editor.close()
        await viewer.close()


async def test_trimmed_scrollback_starts_on_a_character_boundary(tmp_path, in_process_hub):
    """interactive-widgets' terminal decodes each frame alone: a frame starting inside a UTF-8
    character throws in the page."""
    cfg = write_config(tmp_path / "cfg", """
[pages."/x"]
html = "page.html"
[pages."/x".executors.text]
type = "always"
command = ["python3", "-c", "import time; print('\u00e9' * 3000, end='', flush=True); time.sleep(60)"]
scrollback_bytes = 1001
""")
    async with in_process_hub(cfg) as hub:
        first = await PageClient.connect(f"{hub.ws}/x/ws?roomName=r", additions=False)
        await first.wait_output("text", "\u00e9".encode() * 3000)
        late = await PageClient.connect(f"{hub.ws}/x/ws?roomName=r", additions=False)
        frame = await late.wait_type("text", "output")
        replayed = base64.b64decode(frame["message"]["stdout"])
        assert replayed == "\u00e9".encode() * 500
        await first.close()
        await late.close()


@pytest.mark.parametrize("kind", ["always", "once"])
async def test_output_frames_end_on_character_boundaries(tmp_path, in_process_hub, kind):
    """Characters a program writes in pieces are sent whole, each in one frame."""
    cfg = write_config(tmp_path / "cfg", f"""
[pages."/x"]
html = "page.html"
[pages."/x".executors.split]
type = "{kind}"
command = ["python3", "-c", '''
import sys, time
e = "\u00e9\u20ac\U0001f600".encode()
for piece in (e[:1], e[1:3], e[3:5], e[5:8], e[8:], b"\\xff end"):
    sys.stdout.buffer.write(piece); sys.stdout.flush(); time.sleep(0.1)
time.sleep(60)
''']
""")
    async with in_process_hub(cfg) as hub:
        c = await PageClient.connect(f"{hub.ws}/x/ws?roomName=r", additions=False)
        if kind == "once":
            await c.send("split")
        expected = "\u00e9\u20ac\U0001f600".encode() + b"\xff end"
        await c.wait_output("split", expected)
        chunks = [base64.b64decode(f["message"]["stdout"]) for f in c.frames
                  if f["executor"] == "split" and f["message"]["type"] == "output"]
        assert b"".join(chunks) == expected
        assert len(chunks) >= 2  # sent as it came, not held back to the end
        for chunk in chunks[:-1]:
            chunk.decode()  # each frame decodes alone (the last one holds the byte 0xff)
        await c.close()
