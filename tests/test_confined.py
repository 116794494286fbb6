"""roomhub.confined on a real file system: links are refused wherever they are, never followed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from roomhub import confined
from roomhub.confined import Refused


@pytest.fixture
def room(tmp_path: Path) -> Path:
    (tmp_path / "room").mkdir()
    (tmp_path / "host").mkdir()
    (tmp_path / "host" / "secret").write_bytes(b"host secret")
    return tmp_path / "room"


def host(room: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (room.parent / "host").iterdir()}


def test_a_link_in_place_of_the_file_is_neither_read_written_nor_deleted(room: Path) -> None:
    os.symlink(room.parent / "host" / "secret", room / "f")
    for call in (
        lambda: confined.read_file(room, ["f"], 100),
        lambda: confined.write_file(room, ["f"], b"x"),
        lambda: confined.delete_file(room, ["f"]),
    ):
        with pytest.raises(Refused) as info:
            call()
        assert info.value.reason == Refused.SYMLINK
    assert host(room) == {"secret": b"host secret"} and (room / "f").is_symlink()


def test_a_linked_folder_anywhere_on_the_path_is_refused_and_nothing_is_made_there(room: Path) -> None:
    (room / "a").mkdir()
    os.symlink(room.parent / "host", room / "a" / "b")
    for call in (
        lambda: confined.read_file(room, ["a", "b", "secret"], 100),
        lambda: confined.write_file(room, ["a", "b", "c", "new"], b"x"),
        lambda: confined.delete_file(room, ["a", "b", "secret"]),
        lambda: confined.make_folders(room, ["a", "b", "c"]),
    ):
        with pytest.raises(Refused) as info:
            call()
        assert info.value.reason == Refused.SYMLINK
    assert host(room) == {"secret": b"host secret"}


def test_a_fifo_is_refused_without_blocking(room: Path) -> None:
    os.mkfifo(room / "pipe")
    with pytest.raises(Refused) as info:
        confined.read_file(room, ["pipe"], 100)
    assert info.value.reason == Refused.NOT_FILE


def test_writes_make_folders_keep_the_mode_and_leave_no_temporary_file(room: Path) -> None:
    assert confined.write_file(room, ["a", "b", "f"], b"one") is True
    (room / "a" / "b" / "f").chmod(0o640)
    assert confined.write_file(room, ["a", "b", "f"], b"two") is False
    assert stat.S_IMODE((room / "a" / "b" / "f").stat().st_mode) == 0o640
    assert confined.write_file(room, ["a", "b", "f"], b"three", keep_existing=True) is False
    assert confined.read_file(room, ["a", "b", "f"], 100) == b"two"
    assert os.listdir(room / "a" / "b") == ["f"]
    with pytest.raises(Refused) as info:
        confined.read_file(room, ["a", "b", "f"], 2)
    assert info.value.reason == Refused.TOO_LARGE and info.value.message == "3 bytes, over the limit of 2"
    assert confined.delete_file(room, ["a", "b", "f"]) is True
    assert confined.delete_file(room, ["a", "b", "f"]) is False
    assert confined.delete_file(room, ["nowhere", "f"]) is False


@pytest.mark.parametrize("path", ["/etc/passwd", "../x", "a/../b", "."])
def test_configured_paths_out_of_the_folder_name_no_file(room: Path, path: str) -> None:
    with pytest.raises(Refused) as info:
        confined.write_file(room, confined.parts_of(path), b"x")
    assert info.value.reason == Refused.BAD_PATH
