"""A room's programs put symbolic links in the room directory; the hub, working there as its own user
outside the sandbox, never follows one out of the room (file executors, working directories).

Each runtime (process, bubblewrap, docker): a program swaps a folder or a file of the room for a link
to a host folder holding a marker; then clients save, delete and view files through the real socket.
Nothing on the host changes, no client ever receives the marker, and a control (the folder put back)
shows that saves do work when no link is in the way.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
from runtime_helpers import PageClient, page_config

from pageclient import monitor_contents

MARKER = b"host-secret-7f3a9c"


def monitor_line(frame: dict[str, Any]) -> dict[str, Any] | None:
    """The monitor line (``{"contents"|"error": base64}``) of a file executor's output frame."""
    m = frame["message"]
    if m.get("type") != "output" or "stdout" not in m:
        return None
    try:
        line = json.loads(base64.b64decode(m["stdout"]))
    except ValueError:
        return None  # a program's output, not a file executor's
    return line if isinstance(line, dict) else None


def file_error(frame: dict) -> str:
    """The error a frame tells the viewers of a file, "" if none."""
    line = monitor_line(frame) or {}
    return base64.b64decode(line["error"]).decode() if "error" in line else ""


async def told_of_link(client: PageClient, executor: str) -> None:
    """Wait until the viewers of ``executor`` are told its path goes through a symbolic link (an
    error line, already received or coming). They may be told of a moment between two changes
    first (``sub`` gone before the link that replaces it came). TimeoutError after 20 s."""
    await client.wait_for(
        lambda f: f["executor"] == executor and "symbolic link" in file_error(f), timeout=20
    )


def everything_received(client: PageClient) -> bytes:
    """Every frame, with the monitor lines and their contents decoded: what a marker could hide in."""
    out = []
    for frame in client.frames:
        out.append(json.dumps(frame).encode())
        if (line := monitor_line(frame)) is not None:
            out.append(json.dumps(line).encode())
            out.append(base64.b64decode(line.get("contents") or ""))
    return b"\n".join(out)


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every entry below ``folder``: files with their contents, folders as None."""
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A host folder out of the room, holding ``secret.txt`` with the marker."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_bytes(MARKER)
    return folder


async def test_save_and_delete_refuse_a_folder_swapped_for_a_link(
    runtime: str, tmp_path: Path, outside: Path, in_process_hub
) -> None:
    before = tree(outside)
    config = page_config(
        tmp_path / "cfg",
        runtime,
        f"""
        [x.note]
        type = "file"
        path = "sub/secret.txt"
        initial = "room note"

        [x.swap]
        type = "once"
        command = ["sh", "-c", "rm -rf sub && ln -s {outside} sub && echo SWAPPED"]

        [x.restore]
        type = "once"
        command = ["sh", "-c", "rm -f sub && mkdir sub && echo RESTORED"]
    """,
    )
    async with in_process_hub(config) as hub:
        async with await PageClient.join(hub.ws, "r1") as client:
            await client.wait_for(lambda f: f["executor"] == "note" and monitor_contents(f) == b"room note")
            await client.send("swap", None)
            assert (await client.message("swap", "finished", timeout=60))["exitCode"] == 0

            await client.send("note", {"contents": b64(b"written by a client")})
            refused = await client.message("note", "error")
            assert refused["code"] == "path-refused", refused
            assert "symbolic link" in refused["message"], refused
            await client.send("note", {"delete": True})
            refused = await client.message("note", "error")
            assert refused["code"] == "path-refused", refused
            assert tree(outside) == before  # nothing written, nothing deleted on the host

            # The viewers are told the file cannot be shown (the watcher saw the swap).
            await told_of_link(client, "note")

            # The hub goes on: with a real folder back, a save is written in the room.
            await client.send("restore", None)
            assert (await client.message("restore", "finished", timeout=60))["exitCode"] == 0
            await client.send("note", {"contents": b64(b"saved again")})
            await client.wait_for(
                lambda f: f["executor"] == "note" and monitor_contents(f) == b"saved again"
            )
            (room,) = (tmp_path / "data" / "rooms").glob("*/*")
            assert (room / "sub" / "secret.txt").read_bytes() == b"saved again"
    assert tree(outside) == before
    assert MARKER not in everything_received(client)


async def test_a_file_or_folder_linked_out_of_the_room_is_never_read(
    runtime: str, tmp_path: Path, outside: Path, in_process_hub
) -> None:
    secret = outside / "secret.txt"
    config = page_config(
        tmp_path / "cfg",
        runtime,
        f"""
        [x.links]
        type = "prologue"
        command = ["sh", "-c", "ln -s {secret} leak.txt && ln -s {outside} d"]

        [x.leak]
        type = "file"
        path = "leak.txt"

        [x.deep]
        type = "file"
        path = "d/secret.txt"
    """,
    )
    async with in_process_hub(config) as hub:
        async with await PageClient.join(hub.ws, "r1") as first:
            await told_of_link(first, "leak")
            await told_of_link(first, "deep")
            await first.quiet(0.5)
            async with await PageClient.join(hub.ws, "r1") as late:  # a late joiner gets the room's state
                await told_of_link(late, "leak")
                await told_of_link(late, "deep")
    for client in (first, late):
        assert MARKER not in everything_received(client)
    assert secret.read_bytes() == MARKER


async def test_a_working_directory_is_not_made_through_a_link(
    runtime: str, tmp_path: Path, outside: Path, in_process_hub
) -> None:
    config = page_config(
        tmp_path / "cfg",
        runtime,
        f"""
        [x.swap]
        type = "once"
        command = ["sh", "-c", "rm -rf sub && ln -s {outside} sub"]

        [x.work]
        type = "once"
        command = ["sh", "-c", "echo WORKED"]
        working_directory = "sub/deeper"
    """,
    )
    async with in_process_hub(config) as hub:
        async with await PageClient.join(hub.ws, "r1") as client:
            await client.send("work", None)  # a control: made in the room, and runs there
            assert (await client.message("work", "finished", timeout=60))["exitCode"] == 0
            await client.wait_output("work", b"WORKED")
            await client.send("swap", None)
            assert (await client.message("swap", "finished", timeout=60))["exitCode"] == 0
            await client.send("work", None)
            errored = await client.message("work", "errored", timeout=60)
    assert tree(outside) == {"secret.txt": MARKER}  # no folder made on the host
    assert "symbolic link" in base64.b64decode(errored["message"]).decode(), errored


def inotify_watches() -> int:
    """Inotify watches this process holds now (the kernel's own account, /proc/self/fdinfo)."""
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            if os.readlink(fd) == "anon_inode:inotify":
                info = (Path("/proc/self/fdinfo") / fd.name).read_text()
                count += sum(line.startswith("inotify wd:") for line in info.splitlines())
        except OSError:
            continue  # closed meanwhile
    return count


async def test_the_watcher_does_not_follow_a_link_into_the_host(tmp_path: Path, outside: Path,
                                                                 in_process_hub) -> None:
    """A link to a host tree, there before the watcher starts (a prologue) or moved in with a
    folder: the hub watches none of the tree's folders (a link to / would have it walk the host)."""
    for i in range(40):
        (outside / f"d{i}" / "e").mkdir(parents=True)
    config = page_config(
        tmp_path / "cfg",
        "process",
        f"""
        [x.links]
        type = "prologue"
        command = ["sh", "-c", "ln -s {outside} linked && mkdir -p .stage/w && ln -s {outside} .stage/w/l"]

        [x.arrive]
        type = "once"
        command = ["sh", "-c", "mv .stage/w w && echo > w/shown.txt"]

        [x.shown]
        type = "file"
        path = "w/shown.txt"

        [x.top]
        type = "file"
        path = "top.txt"
        initial = "top"
    """,
    )
    async with in_process_hub(config) as hub:
        before = inotify_watches()
        async with await PageClient.join(hub.ws, "r1") as client:
            await client.wait_for(lambda f: f["executor"] == "top" and monitor_contents(f) == b"top")
            await client.send("arrive", None)
            assert (await client.message("arrive", "finished", timeout=60))["exitCode"] == 0
            await client.wait_for(lambda f: f["executor"] == "shown" and monitor_contents(f) == b"\n")
            # The room directory and w: a watch each, nothing of the 80 folders under the links.
            assert inotify_watches() - before <= 2, inotify_watches() - before
