"""Volume mode (the remote-engine set-up): the room mirror keeps file viewers and editors working.

The engine here is local, but ``room_storage = "volume"`` gives containers a
named volume the hub never reads directly: everything the clients see of
the files went through the monitor container.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from runtime_helpers import PageClient, page_config

from pageclient import monitor_contents


def shows(executor: str, contents: bytes):
    """A predicate: a frame of file executor ``executor`` carrying ``contents``."""
    return lambda f: f.get("executor") == executor and monitor_contents(f) == contents


@pytest.mark.docker
async def test_viewers_and_editors_through_the_monitor(
    docker_runtime: str, tmp_path: Path, in_process_hub
) -> None:
    config = page_config(
        tmp_path,
        docker_runtime,
        """
        [x.notes]
        type = "file"
        path = "notes.txt"
        initial = "first version\\n"

        [x.generated]
        type = "file"
        path = "gen.txt"

        [x.show]
        type = "once"
        command = ["sh", "-c", "cat notes.txt"]

        [x.make]
        type = "once"
        command = ["sh", "-c", "echo generated-in-container > gen.txt"]
    """,
        docker='room_storage = "volume"\nmirror_interval = 0.1',
    )
    async with in_process_hub(config) as hub, await PageClient.join(hub.ws, "r1") as client:
        await client.wait_for(shows("notes", b"first version\n"), 20)

        await client.send("show", None)  # the initial contents reached the volume first
        await client.message("show", "finished", timeout=30)
        assert client.output("show") == b"first version\n"

        await client.send("notes", {"contents": base64.b64encode(b"saved by an editor\n").decode()})
        await client.wait_for(shows("notes", b"saved by an editor\n"), 20)
        await client.send("show", None)
        await client.message("show", "finished", timeout=30)
        assert client.output("show").endswith(b"saved by an editor\n"), client.output("show")

        await client.send("make", None)  # a file made in the volume reaches the viewers
        await client.message("make", "finished", timeout=30)
        await client.wait_for(shows("generated", b"generated-in-container\n"), 20)
