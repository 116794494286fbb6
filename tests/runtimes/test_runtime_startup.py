"""Start-up: unusable runtimes are refused with a reason; a crashed hub's leftovers are removed."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import aiodocker
import pytest
from runtime_helpers import TEST_IMAGE, PageClient, docker_objects, page_config

from hubtest import eventually, serve_refused
from roomhub.config import BubblewrapConfig
from roomhub.runtimes.base import RuntimeUnavailable
from roomhub.runtimes.bubblewrap import BubblewrapRuntime


@pytest.mark.bubblewrap
async def test_missing_bwrap_says_how_to_install() -> None:
    runtime = BubblewrapRuntime(BubblewrapConfig(executable="bwrap-not-installed-here"), "t")
    with pytest.raises(RuntimeUnavailable, match=r"apt-get install bubblewrap"):
        await runtime.check()


def test_unreachable_engine_fails_at_start_up(tmp_path: Path) -> None:
    config = page_config(
        tmp_path,
        "docker",
        """
        [x.t]
        type = "always"
        command = ["sh"]
    """,
        docker='url = "tcp://127.0.0.1:9"',
    )
    result = serve_refused(config, tmp_path / "data")
    assert result.returncode != 0
    log = result.stdout + result.stderr
    assert "cannot reach the Docker engine at tcp://127.0.0.1:9" in log, log


@pytest.mark.docker
async def test_restart_after_sigkill_removes_only_own_leftovers(
    docker_runtime: str, tmp_path: Path, hub_process
) -> None:
    config = page_config(
        tmp_path,
        docker_runtime,
        """
        [x.spin]
        type = "always"
        command = ["sh", "-c", "echo up; exec sleep 600"]
    """,
        docker='room_storage = "volume"',
    )
    hub = hub_process(config)
    hub_id = (tmp_path / "data" / "hub-id").read_text().strip()
    own = f"roomhub.hub={hub_id}"
    for room in ("a", "b", "c"):
        client = await PageClient.join(hub.ws, room)
        await client.wait_output("spin", b"up")
        await client.ws.close()  # grace 0: the hub tears these rooms down...
    live = []
    for room in ("d", "e"):
        client = await PageClient.join(hub.ws, room)
        live.append(client)
        await client.wait_output("spin", b"up")  # ...and keeps these two live
    containers, volumes = await docker_objects(own)
    assert len(containers) == 4 and len(volumes) == 2, (containers, volumes)  # program + monitor

    refused = serve_refused(config, tmp_path / "data")  # a second hub on the live one's data directory
    assert refused.returncode == 2 and f"pid {hub.proc.pid}" in refused.stdout, refused.stdout
    assert "removed" not in refused.stdout, refused.stdout
    live_containers, live_volumes = await docker_objects(own)  # the live hub's rooms are untouched
    assert set(live_containers) == set(containers) and set(live_volumes) == set(volumes)

    hub.stop(signal.SIGKILL)
    left_containers, left_volumes = await docker_objects(own)  # left behind, still labelled
    assert set(left_containers) == set(containers) and set(left_volumes) == set(volumes)
    for client in live:
        await client.close()

    other = f"other-{uuid.uuid4().hex[:8]}"
    async with aiodocker.Docker() as docker:
        foreign_volume = await docker.volumes.create(
            {"Name": f"roomhub-{other}", "Labels": {"roomhub.hub": other, "roomhub.room": "/p:x"}}
        )
        foreign = await docker.containers.create(
            {
                "Image": TEST_IMAGE,
                "Cmd": ["sleep", "600"],
                "HostConfig": {"NetworkMode": "none"},
                "Labels": {
                    "roomhub.hub": other,
                    "roomhub.room": "/p:x",
                    "roomhub.executor": "spin",
                },
            },
            name=f"roomhub-{other}",
        )
        await foreign.start()
        try:
            hub2 = hub_process(config)
            assert "removed 4 containers and 2 volumes left by an earlier run" in hub2.log()
            assert await docker_objects(own) == ([], [])
            assert await docker_objects(f"roomhub.hub={other}") == (
                [foreign.id],
                [foreign_volume.name],
            )
            # the restarted hub works normally
            async with await PageClient.join(hub2.ws, "a") as client:
                await client.wait_output("spin", b"up")
        finally:
            await foreign.delete(force=True)
            await foreign_volume.delete()


@pytest.mark.bubblewrap
async def test_bubblewrap_without_pids_cgroup_says_so(
    bubblewrap_runtime: str, tmp_path: Path, monkeypatch, caplog
) -> None:
    from roomhub.runtimes import cgroups
    from roomhub.runtimes.base import ProgramSpec, drain

    monkeypatch.setattr(cgroups, "find_pids_base", lambda: (None, "", "no pids controller (test)"))
    runtime = BubblewrapRuntime(BubblewrapConfig(), "t-" + uuid.uuid4().hex[:8])
    await runtime.check()
    assert "pids limit NOT enforced: no usable pids cgroup (no pids controller (test))" in caplog.text
    handle = await runtime.start(ProgramSpec(["sh", "-c", "echo still-runs"], tmp_path, stdin=False))
    assert b"still-runs" in await drain(handle)  # the other limits and the sandbox still apply
    assert await handle.wait() == 0


@pytest.mark.bubblewrap
async def test_bubblewrap_after_sigkill(bubblewrap_runtime: str, tmp_path: Path, hub_process) -> None:
    """The sandboxes die with the hub (--die-with-parent); the restart removes their cgroups."""
    import psutil

    from roomhub.runtimes.cgroups import find_pids_base

    marker = str(uuid.uuid4().int % 900000 + 100000)
    config = page_config(
        tmp_path,
        bubblewrap_runtime,
        f"""
        [x.spin]
        type = "always"
        command = ["sh", "-c", "echo up; sleep {marker}"]
    """,
    )
    hub = hub_process(config)
    hub_id = (tmp_path / "data" / "hub-id").read_text().strip()
    client = await PageClient.join(hub.ws, "a")
    await client.wait_output("spin", b"up")

    def sandboxed() -> list[psutil.Process]:
        return [
            p
            for p in psutil.process_iter(["cmdline"])
            if p.info["cmdline"] and marker in " ".join(p.info["cmdline"])
        ]

    assert sandboxed()
    hub.stop(signal.SIGKILL)
    await client.close()
    await eventually(lambda: not sandboxed(), within=10)
    base, _, _ = find_pids_base()
    if base is None:
        return
    parent = base / f"roomhub-{hub_id}"
    assert [p for p in parent.iterdir() if p.is_dir()]  # the dead run's cgroup is still there
    hub_process(config)
    assert [p for p in parent.iterdir() if p.is_dir()] == []
