"""Executor semantics through a real socket: always, once, prologue, files, terminal size."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest
import websockets

from hubtest import write_config
from pageclient import PageClient, monitor_contents


def page(tmp_path: Path, executors: str, **server: object) -> Path:
    limits = "".join(f"{k} = {v}\n" for k, v in server.items())
    return write_config(tmp_path / "cfg", f"""
[server.limits]
{limits}
[pages."/x"]
html = "page.html"
{executors}
""")


async def test_always_restarts_with_capped_backoff_and_says_so(tmp_path, in_process_hub):
    cfg = page(tmp_path, """
[pages."/x".executors.flaky]
type = "always"
command = ["sh", "-c", "echo run; exit 3"]
restart_delay = 0.05
restart_delay_max = 0.2
""")
    async with in_process_hub(cfg) as hub:
        c = await PageClient.connect(f"{hub.ws}/x/ws?roomName=r")
        def exits() -> list[dict]:
            return [f for f in c.frames if f["message"].get("type") == "exited"]

        await c.wait_for(lambda f: len(exits()) >= 5, timeout=10)
        exits = exits()[:5]
        assert [e["message"]["exitCode"] for e in exits] == [3] * 5
        assert [e["message"]["restartIn"] for e in exits] == [0.05, 0.1, 0.2, 0.2, 0.2]
        restarted = await c.wait_type("flaky", "restarted")
        assert restarted["message"]["restarts"] >= 1
        assert c.output("flaky").count(b"run") >= 5
        await c.close()


async def test_always_that_cannot_start_reports_and_retries(tmp_path, in_process_hub):
    cfg = page(tmp_path, """
[pages."/x".executors.missing]
type = "always"
command = ["/nonexistent/program"]
restart_delay = 0.05
""")
    async with in_process_hub(cfg) as hub:
        c = await PageClient.connect(f"{hub.ws}/x/ws?roomName=r")
        error = await c.wait_type("missing", "error")
        assert error["message"]["code"] == "start-failed"
        assert "nonexistent" in error["message"]["message"]
        exited = await c.wait_type("missing", "exited")
        assert exited["message"]["exitCode"] is None
        await c.close()


async def test_once_busy_exit_code_and_timeout(tmp_path, in_process_hub):
    cfg = page(tmp_path, """
[pages."/x".executors.job]
type = "once"
command = ["sh", "-c", "sleep 0.4; printf 'partial line without newline'; exit 7"]
[pages."/x".executors.hang]
type = "once"
command = ["sleep", "30"]
timeout = 0.5
""")
    async with in_process_hub(cfg) as hub:
        a = await PageClient.connect(f"{hub.ws}/x/ws?roomName=r")
        b = await PageClient.connect(f"{hub.ws}/x/ws?roomName=r")
        await a.send("job")
        await a.wait_type("job", "started")
        await b.send("job", {"anything": True})
        busy = await b.wait_type("job", "busy")
        assert busy["message"]["message"] == "already running"
        for client in (a, b):
            finished = await client.wait_type("job", "finished")
            assert finished["message"] == {"type": "finished", "exitCode": 7, "timedOut": False}
            assert client.output("job") == b"partial line without newline"
        await a.send("hang")
        timeout = await a.wait_type("hang", "timeout")
        assert timeout["message"]["after"] == 0.5
        finished = await a.wait_type("hang", "finished")
        assert finished["message"]["timedOut"] is True
        assert finished["message"]["exitCode"] < 0  # killed by a signal
        # The button works again after a timeout.
        a.frames.clear()
        await a.send("hang")
        await a.wait_type("hang", "started")
        await a.close()
        await b.close()


async def test_once_that_cannot_start_is_errored(tmp_path, in_process_hub):
    cfg = page(tmp_path, """
[pages."/x".executors.bad]
type = "once"
command = ["/nonexistent/tool"]
""")
    async with in_process_hub(cfg) as hub:
        c = await PageClient.connect(f"{hub.ws}/x/ws?roomName=r")
        await c.send("bad")
        errored = await c.wait_type("bad", "errored")
        assert b"nonexistent" in base64.b64decode(errored["message"]["message"])
        await c.close()


async def test_prologue_finishes_before_always_starts(tmp_path, in_process_hub):
    cfg = page(tmp_path, """
[pages."/x".executors.show]
type = "always"
command = ["sh", "-c", "cat flag.txt; exec sleep 100"]
[pages."/x".executors.prepare]
type = "prologue"
command = ["sh", "-c", "sleep 0.3; echo prepared > flag.txt; echo prologue-said-hi"]
""")
    async with in_process_hub(cfg) as hub:
        c = await PageClient.connect(f"{hub.ws}/x/ws?roomName=r")
        await c.wait_output("show", b"prepared")
        assert b"No such file" not in c.output("show")
        await c.wait_output("prepare", b"prologue-said-hi")
        await c.close()


@pytest.mark.parametrize("command,reason", [
    ('["sh", "-c", "echo broken >&2; exit 2"]', "exit code 2"),
    ('["sleep", "30"]', "timed out"),
])
async def test_failed_prologue_fails_the_room_with_a_reason(tmp_path, in_process_hub, command, reason):
    cfg = page(tmp_path, f"""
[pages."/x".executors.prepare]
type = "prologue"
command = {command}
timeout = 0.5
""")
    async with in_process_hub(cfg) as hub:
        c = await PageClient.connect(f"{hub.ws}/x/ws?roomName=r")
        refused = await c.wait_type(None, "error")
        assert reason in refused["message"]["message"]
        with pytest.raises(websockets.ConnectionClosed):
            await c.wait_for(lambda f: False, timeout=5)
        assert c.ws.close_code == 4011
        assert hub.hub.face("pages").rooms["/x"].rooms == {}


async def test_terminal_size_is_the_smallest_of_its_viewers(tmp_path, in_process_hub):
    cfg = page(tmp_path, """
[pages."/x".executors.term]
type = "always"
tty = true
command = ["sh", "-c", "while read line; do stty size; done"]
""")
    async with in_process_hub(cfg) as hub:
        a = await PageClient.connect(f"{hub.ws}/x/ws?roomName=r")
        b = await PageClient.connect(f"{hub.ws}/x/ws?roomName=r")
        await a.send("term", {"size": {"cols": 120, "rows": 40}})
        await b.send("term", {"size": {"cols": 90, "rows": 50}})
        await asyncio.sleep(0.2)
        await a.stdin("term", "\n")
        await a.wait_output("term", b"40 90")
        await b.close()
        await asyncio.sleep(0.2)
        await a.stdin("term", "\n")
        await a.wait_output("term", b"40 120")
        await a.close()


async def test_editor_save_reaches_viewers_and_disk_changes_are_pushed(tmp_path, in_process_hub):
    cfg = page(tmp_path, """
[pages."/x".executors.doc]
type = "file"
path = "sub/doc.txt"
initial = "v1"
max_bytes = 1000
[pages."/x".executors.shell]
type = "always"
command = ["sh"]
""")
    async with in_process_hub(cfg) as hub:
        editor = await PageClient.connect(f"{hub.ws}/x/ws?roomName=r")
        viewer = await PageClient.connect(f"{hub.ws}/x/ws?roomName=r")

        def contents(value: bytes):
            return lambda f: f["executor"] == "doc" and monitor_contents(f) == value

        await viewer.wait_for(contents(b"v1"))
        # A save in the monitor's own shape: a JSON line, base64 in stdin.
        line = json.dumps({"contents": base64.b64encode(b"v2 from editor").decode()}) + "\n"
        await editor.send("doc", {"stdin": base64.b64encode(line.encode()).decode()})
        await viewer.wait_for(contents(b"v2 from editor"))
        room = hub.hub.face("pages").rooms["/x"].get("r")
        assert (room.directory / "sub" / "doc.txt").read_bytes() == b"v2 from editor"
        # A program changes the file: everybody gets the new contents.
        await editor.stdin("shell", "printf v3-from-shell > sub/doc.txt\n")
        await viewer.wait_for(contents(b"v3-from-shell"))
        await editor.wait_for(contents(b"v3-from-shell"))
        # Too large: refused to the sender, file unchanged.
        await editor.send("doc", {"contents": base64.b64encode(b"x" * 2000).decode()})
        error = await editor.wait_type("doc", "error")
        assert error["message"]["code"] == "too-large"
        assert (room.directory / "sub" / "doc.txt").read_bytes() == b"v3-from-shell"
        # Delete: viewers are told the file is gone.
        await editor.send("doc", {"delete": True})
        gone = await viewer.wait_for(
            lambda f: f["executor"] == "doc" and b"error" in base64.b64decode(f["message"].get("stdout", ""))
        )
        assert b"No such file" in base64.b64decode(
            json.loads(base64.b64decode(gone["message"]["stdout"]))["error"]
        )
        await editor.close()
        await viewer.close()


async def test_resource_limits_are_enforced(tmp_path, in_process_hub):
    cfg = page(tmp_path, """
[pages."/x".executors.hog]
type = "once"
command = ["python3", "-c", "x = bytearray(600 * 1024 * 1024); print('allocated')"]
limits = { memory_bytes = 134217728 }
[pages."/x".executors.writer]
type = "once"
command = ["sh", "-c", "head -c 3000000 /dev/zero > big.bin"]
limits = { file_size_bytes = 1000000 }
[pages."/x".executors.spin]
type = "once"
command = ["python3", "-c", "while True: pass"]
limits = { cpu_seconds = 1 }
timeout = 30
""")
    async with in_process_hub(cfg) as hub:
        c = await PageClient.connect(f"{hub.ws}/x/ws?roomName=r")
        await c.send("hog")
        finished = await c.wait_type("hog", "finished")
        assert finished["message"]["exitCode"] != 0
        assert b"MemoryError" in c.output("hog") and b"allocated" not in c.output("hog")
        await c.send("writer")
        finished = await c.wait_type("writer", "finished")
        assert finished["message"]["exitCode"] != 0
        room = hub.hub.face("pages").rooms["/x"].get("r")
        assert (room.directory / "big.bin").stat().st_size <= 1000000
        await c.send("spin")
        finished = await c.wait_type("spin", "finished", timeout=20)
        assert finished["message"]["timedOut"] is False
        assert finished["message"]["exitCode"] in (-24, -9)  # SIGXCPU, then SIGKILL at the hard limit
        await c.close()


async def test_file_in_a_folder_made_just_before_is_pushed(tmp_path, in_process_hub):
    cfg = page(tmp_path, """
[pages."/x".executors.gen]
type = "file"
path = "out/deep/gen.txt"
[pages."/x".executors.make]
type = "once"
command = ["sh", "-c", "mkdir -p out/deep && echo generated > out/deep/gen.txt"]
""")
    async with in_process_hub(cfg) as hub:
        for attempt in range(5):
            room = f"r{attempt}"
            c = await PageClient.connect(f"{hub.ws}/x/ws?roomName={room}")
            await c.wait_type(None, "joined")
            await c.send("make")
            await c.wait_for(
                lambda f: f["executor"] == "gen" and monitor_contents(f) == b"generated\n", timeout=5
            )
            await c.close()
