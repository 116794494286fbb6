"""One suite, every runtime: executor semantics through the real pages socket.

Each test runs with ``process``, ``bubblewrap`` and ``docker`` (busybox test
image); the commands are plain POSIX ``sh`` so that the same page works in
all three.
"""

from __future__ import annotations

import logging
import random
import signal
from pathlib import Path

import psutil
import pytest
from runtime_helpers import PageClient, docker_objects, page_config

from hubtest import eventually


async def test_always_restarts_with_backoff_and_notice(runtime: str, tmp_path: Path, in_process_hub) -> None:
    config = page_config(
        tmp_path,
        runtime,
        """
        [x.tick]
        type = "always"
        command = ["sh", "-c", "echo tick; exit 3"]
        restart_delay = 0.1
        restart_delay_max = 0.4
        stable_after = 30
    """,
    )
    async with in_process_hub(config) as hub, await PageClient.join(hub.ws, "r1") as client:
        delays = []
        for restart in (1, 2, 3):
            exited = await client.message("tick", "exited")
            assert exited["exitCode"] == 3
            delays.append(exited["restartIn"])
            assert (await client.message("tick", "restarted"))["restarts"] == restart
        assert delays == [0.1, 0.2, 0.4]  # doubling, then capped
        exited = await client.message("tick", "exited")
        assert exited["restartIn"] == 0.4
        assert client.output("tick").count(b"tick") >= 4


async def test_once_busy_timeout_and_exit_code(runtime: str, tmp_path: Path, in_process_hub) -> None:
    config = page_config(
        tmp_path,
        runtime,
        """
        [x.run]
        type = "once"
        command = ["sh", "-c", "echo started-run; sleep 1; echo done-run; exit 5"]
        timeout = 30

        [x.hang]
        type = "once"
        command = ["sh", "-c", "echo hanging; exec sleep 60"]
        timeout = 1
    """,
    )
    async with in_process_hub(config) as hub, await PageClient.join(hub.ws, "r1") as client:
        await client.send("run", None)
        await client.message("run", "started")
        await client.wait_output("run", b"started-run")
        await client.send("run", None)
        busy = await client.message("run", "busy")
        assert "running" in busy["message"]
        finished = await client.message("run", "finished")
        assert finished == {"type": "finished", "exitCode": 5, "timedOut": False}
        assert b"done-run" in client.output("run")

        await client.send("hang", None)
        await client.message("hang", "started")
        timeout = await client.message("hang", "timeout", timeout=30)
        assert timeout["after"] == 1
        finished = await client.message("hang", "finished", timeout=30)
        assert finished["timedOut"] is True and finished["exitCode"] != 0

        # the button works again after a timeout
        await client.send("run", None)
        assert (await client.message("run", "finished"))["exitCode"] == 5


async def test_prologue_runs_before_always(runtime: str, tmp_path: Path, in_process_hub) -> None:
    config = page_config(
        tmp_path,
        runtime,
        """
        [x.watch]
        type = "always"
        command = ["sh", "-c", "cat flag || echo NO-FLAG; exec sleep 60"]

        [x.setup]
        type = "prologue"
        command = ["sh", "-c", "sleep 0.5; echo prologue-ready > flag; echo set-up"]
    """,
    )
    async with in_process_hub(config) as hub, await PageClient.join(hub.ws, "r1") as client:
        out = await client.wait_output("watch", b"prologue-ready")
        assert b"NO-FLAG" not in out
        assert b"set-up" in client.output("setup")  # the prologue's output reached the joiner


async def test_epilogue_runs_at_teardown(runtime: str, tmp_path: Path, in_process_hub, caplog) -> None:
    caplog.set_level(logging.INFO, logger="roomhub")
    config = page_config(
        tmp_path,
        runtime,
        """
        [x.keep]
        type = "always"
        command = ["sh", "-c", "echo alive > alive.txt; echo written; exec sleep 60"]

        [x.bye]
        type = "epilogue"
        command = ["sh", "-c", "echo epilogue-saw-$(cat alive.txt)"]
        timeout = 20
    """,
    )
    async with in_process_hub(config) as hub:
        async with await PageClient.join(hub.ws, "r1") as client:
            await client.wait_output("keep", b"written")
        # the last client left: teardown stops `keep`, then runs the epilogue in the room directory
        await eventually(lambda: "epilogue-saw-alive" in caplog.text, within=30)
        assert "epilogue 'bye' ended (exit code 0)" in caplog.text


async def test_tty_resize(runtime: str, tmp_path: Path, in_process_hub) -> None:
    config = page_config(
        tmp_path,
        runtime,
        """
        [x.term]
        type = "always"
        command = ["sh", "-i"]
        tty = true
    """,
    )
    async with in_process_hub(config) as hub, await PageClient.join(hub.ws, "r1") as client:
        await client.wait_for(
            lambda f: f.get("executor") == "term" and f["message"].get("type") == "output", 20
        )  # the shell's prompt: it runs
        await client.send("term", {"size": {"cols": 91, "rows": 33}})
        await client.stdin("term", "stty size; echo marker-$((40+2))\n")
        out = await client.wait_output("term", b"marker-42")
        assert b"33 91" in out
        await client.send("term", {"size": {"cols": 120, "rows": 40}})
        await client.stdin("term", "stty size; echo again-$((40+3))\n")
        out = await client.wait_output("term", b"again-43")
        assert b"40 120" in out


async def test_clean_shutdown_leaves_no_program(runtime: str, tmp_path: Path, hub_process) -> None:
    marker = str(random.randrange(100000, 999999))
    config = page_config(
        tmp_path,
        runtime,
        f"""
        [x.spin]
        type = "always"
        command = ["sh", "-c", "echo up; sleep {marker} & sleep {marker}"]

        [x.job]
        type = "once"
        command = ["sh", "-c", "echo job; sleep {marker}"]
        timeout = 300
    """,
    )
    hub = hub_process(config)
    hub_id = (tmp_path / "data" / "hub-id").read_text().strip()

    def leftovers() -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info["cmdline"] or []
            if any(marker in part for part in cmdline):
                found.append(proc)
        return found

    rooms = []
    for name in ("a", "b"):
        client = await PageClient.join(hub.ws, name)
        rooms.append(client)
        await client.wait_output("spin", b"up")
        await client.send("job", None)
        await client.wait_output("job", b"job")
    assert len(leftovers()) >= 4  # the programs really run (the check below can fail)
    if runtime == "docker":
        assert len((await docker_objects(f"roomhub.hub={hub_id}"))[0]) == 4
    assert hub.stop(signal.SIGTERM, timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises it
    assert "shutdown complete" in hub.log()
    assert leftovers() == []
    if runtime == "docker":
        assert await docker_objects(f"roomhub.hub={hub_id}") == ([], [])
    for client in rooms:
        await client.close()


@pytest.mark.parametrize(
    "runtime_name",
    [
        pytest.param("bubblewrap", marks=pytest.mark.bubblewrap),
        pytest.param("docker", marks=pytest.mark.docker),
    ],
)
async def test_pids_limit(runtime_name: str, tmp_path: Path, in_process_hub) -> None:
    from runtime_helpers import require

    require(runtime_name)
    if runtime_name == "bubblewrap":
        from roomhub.runtimes.cgroups import find_pids_base

        base, _, reason = find_pids_base()
        if base is None:
            pytest.skip(f"no pids cgroup here ({reason}): the hub logs that pids are not enforced")
    config = page_config(
        tmp_path,
        runtime_name,
        """
        [x.forks]
        type = "once"
        command = ["sh", "-c", "for i in $(seq 10); do sleep 5 & done; kill $(jobs -p); wait"]
        limits = { pids = 6 }
    """,
    )
    async with in_process_hub(config) as hub, await PageClient.join(hub.ws, "r1") as client:
        await client.send("forks", None)
        await client.message("forks", "finished", timeout=30)
        out = client.output("forks").lower()
        assert b"fork" in out, out  # dash: "Cannot fork"; busybox: "can't fork"
