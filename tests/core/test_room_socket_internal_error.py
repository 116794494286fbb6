"""An internal error while handling a page room's frame reaches the client as close code 1011.

The error is injected into the file executor's handler (a hub bug, no fault of the client's
frame): what is tested is that the close frame the hub sends is delivered, not lost as 1006.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hubtest import close_of, serve_in_loop, write_config
from pageclient import PageClient
from roomhub.pages.files import FileView

FILE_PAGE = """
[pages."/p"]
html = "page.html"
[pages."/p".executors.notes]
type = "file"
path = "notes.txt"
"""


async def test_an_internal_error_in_a_page_room_closes_with_1011(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: FileView, connection: Any, message: Any) -> None:
        raise RuntimeError("a bug in the hub")

    monkeypatch.setattr(FileView, "handle", broken)
    config = write_config(tmp_path / "cfg", FILE_PAGE)
    async with serve_in_loop(config, tmp_path / "data") as h:
        client = await PageClient.connect(f"{h.ws}/p/ws?roomName=r")
        await client.wait_type(None, "joined")
        await client.send("notes", {"delete": True})
        assert await close_of(client.ws) == (1011, "internal error")
