"""A data directory belongs to one running hub: a second refuses to start, naming the first, and
leaves its rooms alone; once the first is dead (SIGKILL), the next hub starts and cleans up."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from hubtest import serve_refused, write_config
from pageclient import PageClient
from roomhub.config import load_config
from roomhub.hub import Hub, HubError

TERMINAL = """
[pages."/t"]
html = "page.html"

[pages."/t".executors.term]
type = "always"
command = ["sh", "-i"]
tty = true
"""


def room_dirs(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "rooms").glob("*/*"))


async def test_a_second_hub_is_refused_and_the_first_keeps_its_rooms(tmp_path: Path, hub_process) -> None:
    config = write_config(tmp_path / "cfg", TERMINAL)
    data_dir = tmp_path / "data"
    first = hub_process(config)
    client = await PageClient.connect(f"{first.ws}/t/ws?roomName=live")
    await client.stdin("term", "echo up-$((20+22))\n")
    await client.wait_output("term", b"up-42", timeout=20)
    (room,) = room_dirs(data_dir)

    second = serve_refused(config, data_dir)
    assert second.returncode == 2, second.stdout
    assert f"pid {first.proc.pid}" in second.stdout, second.stdout
    assert f"127.0.0.1:{first.port}" in second.stdout, second.stdout
    assert "in use by another hub" in second.stdout, second.stdout

    # The first hub's room is intact: its directory is there and its terminal works in it.
    assert room_dirs(data_dir) == [room]
    await client.stdin("term", "touch still-here && echo touched-$((6*7))\n")
    await client.wait_output("term", b"touched-42", timeout=20)
    assert (room / "still-here").is_file()

    first.stop(signal.SIGKILL)  # no clean shutdown: the room directory stays behind
    await client.close()
    assert room_dirs(data_dir) == [room]

    third = hub_process(config)  # the lock died with the first hub
    assert "removing room directories left by an earlier run" in third.log()
    assert not room.exists()
    fresh = await PageClient.connect(f"{third.ws}/t/ws?roomName=live")
    await fresh.stdin("term", "echo again-$((40+2))\n")
    await fresh.wait_output("term", b"again-42", timeout=20)
    await fresh.close()


async def test_an_in_process_hub_is_refused_a_held_data_dir_until_it_is_released(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path / "cfg", TERMINAL))
    config.server.data_dir = tmp_path / "data"
    first, second = Hub(config), Hub(config)
    await first.start()
    try:
        with pytest.raises(HubError, match=r"in use by another hub \(pid \d+, serving 127\.0\.0\.1:8000"):
            await second.start()
    finally:
        await first.stop()
    await second.start()  # released by the first one's stop
    await second.stop()


def test_an_unusable_lock_file_is_a_start_up_refusal(tmp_path: Path) -> None:
    config = write_config(tmp_path / "cfg", TERMINAL)
    (tmp_path / "data" / "hub.lock").mkdir(parents=True)  # cannot be opened as a file
    result = serve_refused(config, tmp_path / "data")
    assert result.returncode == 2, result.stdout
    assert f"cannot lock the data directory {tmp_path / 'data'}: " in result.stdout, result.stdout
    assert "Traceback" not in result.stdout, result.stdout
