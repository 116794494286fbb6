"""Confinement: which host files a sandbox reaches, and bounds on the space its programs fill.

Every denial is paired with a control that succeeds (the same reads with the
``process`` runtime, a write below the bound, a room under its quota), so a
test that could not fail would show up as a failing control.
"""

from __future__ import annotations

import base64
import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from runtime_helpers import PageClient, page_config, require, run_once, shell_page

from roomhub.pages import page_slug

MiB = 1 << 20


def existing_system_secrets() -> list[Path]:
    """The host's own secret files, those of them present here."""
    names = ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/docker/key.json")
    return [Path(name) for name in names if Path(name).exists()]


@contextlib.contextmanager
def planted_secrets(token: str) -> Iterator[list[Path]]:
    """Root-only files (mode 0600) in host folders a sandbox must not reach; removed afterwards."""
    folders = [Path("/etc"), Path("/etc/docker"), Path("/var/lib"), Path("/root"), Path("/home")]
    planted: list[Path] = []
    try:
        for folder in folders:
            if not folder.is_dir() or not os.access(folder, os.W_OK):
                continue
            path = folder / f"roomhub-test-secret-{token}"
            path.write_text(f"secret-{token}\n")
            path.chmod(0o600)
            planted.append(path)
        yield planted
    finally:
        for path in planted:
            path.unlink(missing_ok=True)


@pytest.mark.parametrize(
    "runtime_name", ["process", pytest.param("bubblewrap", marks=pytest.mark.bubblewrap)]
)
async def test_sandbox_reaches_no_host_secret(runtime_name: str, tmp_path: Path, in_process_hub) -> None:
    """As root (the hub's user here), a sandbox can read none of the host's secrets nor another
    room's files, while python3, bash and the room directory work; the process runtime, the
    control, reads every one of them."""
    require(runtime_name)
    if os.geteuid() != 0:
        pytest.skip("plants root-only files in /etc and /var/lib: needs root")
    token = uuid.uuid4().hex[:10]
    # Another room of the same page, made once the hub has started (it clears orphan rooms).
    other_room = tmp_path / "data" / "rooms" / page_slug("/p") / b"other".hex()
    system = existing_system_secrets()
    with planted_secrets(token) as planted:
        hub_environment = Path(f"/proc/{os.getpid()}/environ")  # the hub runs in this process
        targets = [*planted, *system, other_room / "notes.txt", hub_environment]
        reads = "; ".join(f"cat {t} >/dev/null 2>&1 && echo LEAK:{t}" for t in targets)
        probe = (
            f"{reads}; python3 -c 'print(\"PY\", 6 * 7)'; bash -c 'echo BASH-$((1 + 1))';"
            " echo hi > room-file.txt && echo ROOM-WRITE-OK; id -un"
        )
        config = shell_page(tmp_path / "cfg", runtime_name, "probe", probe)
        async with in_process_hub(config) as hub:
            other_room.mkdir(parents=True)
            (other_room / "notes.txt").write_text(f"secret-{token}\n")
            finished, out = await run_once(hub.ws, "r1", "probe", timeout=60)
    assert len(planted) >= 2 and system, (planted, system)  # /etc and /var/lib at least
    assert finished["exitCode"] == 0, out
    assert b"PY 42" in out and b"BASH-2" in out and b"ROOM-WRITE-OK" in out, out
    leaked = {line.split(b":", 1)[1].decode() for line in out.splitlines() if line.startswith(b"LEAK:")}
    if runtime_name == "process":
        assert leaked == {str(t) for t in targets}, out  # the control: the files are there, readable
    else:
        assert leaked == set(), out
        assert out.rstrip().endswith(b"room"), out  # the sandbox's generated passwd names its user


@pytest.mark.bubblewrap
async def test_bubblewrap_refuses_a_room_inside_a_visible_path(
    bubblewrap_runtime: str, tmp_path: Path, in_process_hub
) -> None:
    """A data directory the sandbox would see (here through extra_ro_binds) would show every room:
    the program is not started and the client is told why."""
    more = f'[runtime.bubblewrap]\nextra_ro_binds = ["{tmp_path / "data"}"]\n'
    config = shell_page(tmp_path / "cfg", bubblewrap_runtime, "probe", "echo STARTED", more)
    async with in_process_hub(config) as hub, await PageClient.join(hub.ws, "r1") as client:
        await client.send("probe", None)
        errored = await client.message("probe", "errored", timeout=30)
        out = client.output("probe")
    message = base64.b64decode(errored["message"]).decode()
    assert "other rooms would be visible" in message and str(tmp_path / "data") in message, message
    assert b"STARTED" not in out, out


TMPFS_PROBE = (
    "dd if=/dev/zero of={dir}/big bs=1048576 count=8 2>&1 | grep -o 'No space left on device';"
    " rm -f {dir}/big; dd if=/dev/zero of={dir}/small bs=1048576 count=2 2>/dev/null"
    " && echo {name}-SMALL-OK"
)


@pytest.fixture(
    params=[
        pytest.param("bubblewrap", marks=pytest.mark.bubblewrap),
        pytest.param("docker", marks=pytest.mark.docker),
    ]
)
def sandbox(request: pytest.FixtureRequest) -> str:
    """Each test using this runs with bubblewrap and with docker."""
    require(request.param)
    return request.param


async def test_tmp_and_shm_are_bounded(sandbox: str, tmp_path: Path, in_process_hub) -> None:
    """8 MiB into a 4 MiB /tmp or /dev/shm fails with ENOSPC; 2 MiB fits (the control)."""
    runtime_name = sandbox
    probe = "; ".join(
        [TMPFS_PROBE.format(dir="/tmp", name="TMP"), TMPFS_PROBE.format(dir="/dev/shm", name="SHM"),
         "echo x > /dev/planted 2>/dev/null && echo DEV-WRITABLE; echo END"]
    )
    sizes = f"tmpfs_bytes = {4 * MiB}\nshm_bytes = {4 * MiB}\n"
    config = shell_page(
        tmp_path / "cfg", runtime_name, "fill", probe, f"[runtime.bubblewrap]\n{sizes}", docker=sizes
    )
    async with in_process_hub(config) as hub:
        _, out = await run_once(hub.ws, "r1", "fill", timeout=60)
    assert b"END" in out, out
    assert out.count(b"No space left on device") == 2, out
    assert b"TMP-SMALL-OK" in out and b"SHM-SMALL-OK" in out, out
    if runtime_name == "bubblewrap":
        assert b"DEV-WRITABLE" not in out, out  # /dev itself is read-only: no unbounded tmpfs there


FILL = (
    "i=0; while [ $i -lt {files} ]; do dd if=/dev/zero of=f$i bs=1048576 count=1 2>/dev/null;"
    " i=$((i + 1)); sleep 0.05; done; echo FILLED"
)


def quota_config(directory: Path, runtime: str, fillers: dict[str, tuple[str, int, str]]) -> Path:
    """A page whose executors, ``{name: (type, MiB to write, more TOML)}``, write into a room of 8 MiB
    (one file of 1 MiB every 50 ms, then ``FILLED``)."""
    tables = "".join(
        f"""
        [x.{name}]
        type = "{kind}"
        command = ["sh", "-c", "{FILL.format(files=files)}"]
        limits = {{ room_bytes = {8 * MiB} }}
        {more}
        """
        for name, (kind, files, more) in fillers.items()
    )
    return page_config(directory, runtime, tables)


async def test_room_quota_ends_the_program_and_tells_the_room(
    runtime: str, tmp_path: Path, in_process_hub
) -> None:
    """Writing 100 MiB into a room of 8 MiB ends the program; every client of the room gets the
    reason (in the output and in ``finished``); 2 MiB in another room runs to its end."""
    fillers = {"fill": ("once", 100, "timeout = 120"), "small": ("once", 2, "")}
    async with in_process_hub(quota_config(tmp_path / "cfg", runtime, fillers)) as hub:
        async with (
            await PageClient.join(hub.ws, "full") as writer,
            await PageClient.join(hub.ws, "full") as watcher,
        ):
            await writer.send("fill", None)
            finished = await writer.message("fill", "finished", timeout=120)
            seen = await watcher.message("fill", "finished", timeout=30)
            out = watcher.output("fill")
            (full,) = (tmp_path / "data" / "rooms").glob(f"*/{b'full'.hex()}")
            used = sum(f.lstat().st_blocks * 512 for f in full.rglob("*"))
        small, small_out = await run_once(hub.ws, "roomy", "small", timeout=60)
    assert b"FILLED" not in out, out
    assert "room quota exceeded" in finished.get("reason", ""), finished
    assert seen == finished and finished["exitCode"] != 0, finished
    assert b"[roomhub] room quota exceeded" in out, out
    assert 8 * MiB < used < 80 * MiB, used  # ended soon after the quota, before its 100 MiB
    assert small["exitCode"] == 0 and "reason" not in small, small  # the control
    assert b"FILLED" in small_out, small_out


@pytest.mark.bubblewrap
async def test_room_quota_reason_reaches_an_always_executors_clients(
    bubblewrap_runtime: str, tmp_path: Path, in_process_hub
) -> None:
    fillers = {"keep": ("always", 100, "restart_delay = 30")}
    config = quota_config(tmp_path / "cfg", bubblewrap_runtime, fillers)
    async with in_process_hub(config) as hub, await PageClient.join(hub.ws, "r1") as client:
        exited = await client.message("keep", "exited", timeout=60)
        out = client.output("keep")
    assert "room quota exceeded" in exited.get("reason", ""), exited
    assert b"[roomhub] room quota exceeded" in out and b"FILLED" not in out, out


def test_disk_usage_counts_blocks_once_and_follows_no_link(tmp_path: Path) -> None:
    from roomhub.runtimes.quota import disk_usage

    room = tmp_path / "room"
    (room / "sub").mkdir(parents=True)
    (room / "sub" / "data").write_bytes(os.urandom(MiB))
    os.link(room / "sub" / "data", room / "again")
    outside = tmp_path / "outside"
    outside.write_bytes(os.urandom(4 * MiB))
    (room / "link").symlink_to(outside)
    (room / "sparse").touch()
    os.truncate(room / "sparse", 1 << 40)  # a terabyte that uses no disk
    used = disk_usage(room)
    assert MiB <= used < 2 * MiB, used
    (room / "more").write_bytes(os.urandom(MiB))
    assert disk_usage(room) >= used + MiB
