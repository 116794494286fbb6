"""An internal error while handling a page room's frame reaches the client as close code 1011."""

from __future__ import annotations

from pathlib import Path

from hubtest import close_of, serve_in_loop, write_config
from pageclient import PageClient

# The room's own program makes the file executor's path a directory: deleting "the file" then
# fails inside the hub (IsADirectoryError), which is no fault of the client's frame.
DIRECTORY_FOR_A_FILE = """
[pages."/p"]
html = "page.html"
[pages."/p".executors.setup]
type = "prologue"
command = ["mkdir", "notes.txt"]
[pages."/p".executors.notes]
type = "file"
path = "notes.txt"
"""


async def test_an_internal_error_in_a_page_room_closes_with_1011(tmp_path: Path) -> None:
    config = write_config(tmp_path / "cfg", DIRECTORY_FOR_A_FILE)
    async with serve_in_loop(config, tmp_path / "data") as h:
        client = await PageClient.connect(f"{h.ws}/p/ws?roomName=r")
        await client.wait_type(None, "joined")
        await client.send("notes", {"delete": True})
        assert await close_of(client.ws) == (1011, "internal error")
