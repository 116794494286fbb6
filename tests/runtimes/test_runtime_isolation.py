"""Isolation: what a sandboxed executor cannot do (bubblewrap and docker), with controls that can.

Each denial is paired with the same command succeeding where it should
(the ``process`` runtime, a room's own directory, an opted-in network), so
a test that cannot fail would show up as a failing control.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from runtime_helpers import PageClient, page_config, require, run_once

# -- bubblewrap -----------------------------------------------------------------------------


@pytest.mark.bubblewrap
async def test_bubblewrap_cannot_write_outside_the_room(
    bubblewrap_runtime: str, tmp_path: Path, in_process_hub
) -> None:
    token = uuid.uuid4().hex[:10]
    outside = tmp_path / "outside"
    outside.mkdir()
    targets = [
        outside / f"a-{token}",
        Path(f"/var/tmp/roomhub-{token}"),
        Path(f"/etc/roomhub-{token}"),
        Path(f"/usr/roomhub-{token}"),
    ]
    writes = "; ".join(f"echo x > {t} 2>/dev/null && echo WROTE {t}" for t in targets)
    config = page_config(
        tmp_path / "cfg",
        bubblewrap_runtime,
        f"""
        [x.probe]
        type = "once"
        command = ["sh", "-c", "{writes}; echo room > inside-{token}.txt && echo ROOM-OK; pwd"]
    """,
    )
    async with in_process_hub(config) as hub:
        async with await PageClient.join(hub.ws, "r1") as client:
            await client.send("probe", None)
            finished = await client.message("probe", "finished", timeout=30)
            out = client.output("probe")
            inside = [p.read_text() for p in (tmp_path / "data" / "rooms").rglob(f"inside-{token}.txt")]
    assert finished["exitCode"] == 0
    assert b"ROOM-OK" in out and b"/room" in out, out
    assert inside == ["room\n"]  # the room directory is writable
    assert b"WROTE" not in out, out
    for target in targets:
        assert not target.exists(), target


@pytest.mark.parametrize(
    "runtime_name", ["process", pytest.param("bubblewrap", marks=pytest.mark.bubblewrap)]
)
async def test_bubblewrap_has_no_network(runtime_name: str, tmp_path: Path, in_process_hub) -> None:
    """A TCP connection to the hub's own port on loopback: refused in the sandbox, else works."""
    require(runtime_name)
    probe = (
        "if exec 3<>/dev/tcp/127.0.0.1/$HUB_PORT; then echo CONNECTED; else echo REFUSED; fi;"
        " cat /proc/net/dev"
    )
    config = page_config(
        tmp_path,
        runtime_name,
        f"""
        [x.net]
        type = "once"
        command = ["bash", "-c", "{probe}"]
    """,
    )
    async with in_process_hub(config) as hub:
        cfg = hub.hub.config.pages["/p"].executors["net"]
        cfg.env["HUB_PORT"] = str(hub.port)
        _, out = await run_once(hub.ws, "r1", "net")
    if runtime_name == "process":
        assert b"CONNECTED" in out, out
    else:
        assert b"REFUSED" in out, out
        table = out.split(b"REFUSED", 1)[1].splitlines()
        interfaces = [line.split(b":")[0].strip() for line in table if b":" in line and b"|" not in line]
        assert interfaces == [b"lo"], out


# -- docker -----------------------------------------------------------------------------------


@pytest.mark.docker
async def test_docker_network_is_off_unless_opted_in(
    docker_runtime: str, tmp_path: Path, in_process_hub
) -> None:
    probe = (
        "echo IFACES=$(ls /sys/class/net | tr '\\\\n' ,); "
        "nc -w 3 127.0.0.1 $HUB_PORT </dev/null 2>/dev/null && echo CONNECTED || echo REFUSED"
    )
    config = page_config(
        tmp_path,
        docker_runtime,
        f"""
        [x.closed]
        type = "once"
        command = ["sh", "-c", "{probe}"]

        [x.opted]
        type = "once"
        command = ["sh", "-c", "{probe}"]
        container = {{ network = "host" }}
    """,
    )
    async with in_process_hub(config) as hub:
        for name in ("closed", "opted"):
            hub.hub.config.pages["/p"].executors[name].env["HUB_PORT"] = str(hub.port)
        _, closed = await run_once(hub.ws, "r1", "closed")
        _, opted = await run_once(hub.ws, "r2", "opted")
    assert b"REFUSED" in closed and b"CONNECTED" not in closed, closed
    assert b"IFACES=lo,\n" in closed, closed  # nothing but loopback
    assert b"CONNECTED" in opted, opted  # the control: the same probe works with a network


@pytest.mark.docker
@pytest.mark.parametrize("storage", ["bind", "volume"])
async def test_docker_room_cannot_see_another_rooms_files(
    docker_runtime: str, storage: str, tmp_path: Path, in_process_hub
) -> None:
    token = uuid.uuid4().hex[:10]
    look = f"find / -name 'secret-{token}' -exec cat {{}} \\\\; 2>/dev/null; echo END"
    config = page_config(
        tmp_path,
        docker_runtime,
        f"""
        [x.setup]
        type = "prologue"
        command = ["sh", "-c", "echo secret-$ROOM > secret-{token}"]

        [x.look]
        type = "once"
        command = ["sh", "-c", "{look}"]
    """,
        docker=f'room_storage = "{storage}"',
    )
    async with in_process_hub(config) as hub:
        executors = hub.hub.config.pages["/p"].executors
        executors["setup"].env["ROOM"] = "alpha"
        async with await PageClient.join(hub.ws, "alpha") as alpha:
            await alpha.message("look", "state")
            executors["setup"].env["ROOM"] = "beta"
            _, seen_by_beta = await run_once(hub.ws, "beta", "look")
            await alpha.send("look", None)
            await alpha.message("look", "finished", timeout=30)
            seen_by_alpha = alpha.output("look")
    assert b"secret-alpha" in seen_by_alpha, seen_by_alpha  # the control: a room sees its own file
    assert b"secret-beta" not in seen_by_alpha
    assert b"secret-beta" in seen_by_beta and b"secret-alpha" not in seen_by_beta, seen_by_beta


@pytest.mark.docker
async def test_docker_memory_limit_kills_and_tells_the_client(
    docker_runtime: str, tmp_path: Path, in_process_hub
) -> None:
    config = page_config(
        tmp_path,
        docker_runtime,
        """
        [x.hog]
        type = "once"
        command = ["sh", "-c", "echo allocating; exec dd if=/dev/zero of=/dev/null bs=96M count=1"]
        limits = { memory_bytes = 33554432 }

        [x.small]
        type = "once"
        command = ["sh", "-c", "exec dd if=/dev/zero of=/dev/null bs=4M count=1"]
        limits = { memory_bytes = 33554432 }
    """,
    )
    async with in_process_hub(config) as hub:
        finished, out = await run_once(hub.ws, "r1", "hog")
        small, small_out = await run_once(hub.ws, "r2", "small")
    assert b"allocating" in out
    assert b"out of memory" in out and b"32 MiB" in out, out
    assert finished["exitCode"] == 137, finished  # 128 + SIGKILL
    assert "out of memory" in finished.get("reason", ""), finished  # the frame says why too
    assert small["exitCode"] == 0 and b"out of memory" not in small_out, small_out  # the control


@pytest.mark.docker
async def test_docker_missing_image_is_named(docker_runtime: str, tmp_path: Path, in_process_hub) -> None:
    config = page_config(
        tmp_path,
        docker_runtime,
        """
        [x.ghost]
        type = "once"
        command = ["true"]
        image = "roomhub-no-such-image:0"
    """,
    )
    async with in_process_hub(config) as hub, await PageClient.join(hub.ws, "r1") as client:
        await client.send("ghost", None)
        errored = await client.message("ghost", "errored")
    import base64

    text = base64.b64decode(errored["message"]).decode()
    assert "roomhub-no-such-image:0" in text and "not found" in text, text


PROBE = (
    "echo UID=$(id -u); echo HOST=$(hostname); grep -E '^(CapEff|NoNewPrivs)' /proc/self/status;"
    " touch /probe-root 2>/dev/null && echo ROOT-WRITABLE || echo ROOT-READONLY;"
    " touch /tmp/probe && echo TMP-OK; touch probe && echo ROOM-OK"
)


@pytest.mark.docker
async def test_docker_container_is_hardened(docker_runtime: str, tmp_path: Path, in_process_hub):
    config = page_config(
        tmp_path,
        docker_runtime,
        f"""
        [x.default]
        type = "once"
        command = ["sh", "-c", "{PROBE}"]

        [x.locked]
        type = "once"
        command = ["sh", "-c", "{PROBE}"]
        container = {{ user = "65534:65534", read_only_root = true }}
        working_directory = "sub"
    """,
    )
    async with in_process_hub(config) as hub:
        async with await PageClient.join(hub.ws, "r1") as client:
            await client.send("default", None)
            await client.message("default", "finished", timeout=30)
            (sub,) = (tmp_path / "data" / "rooms").glob("*/*")
            (sub / "sub").mkdir()
            (sub / "sub").chmod(0o777)  # a non-root user needs a writable directory (bind mount)
            await client.send("locked", None)
            await client.message("locked", "finished", timeout=30)
            default, locked = client.output("default"), client.output("locked")
    assert b"UID=0" in default and b"ROOT-WRITABLE" in default and b"ROOM-OK" in default, default
    assert b"CapEff:\t0000000000000000" in default, default  # every capability dropped, even root's
    assert b"NoNewPrivs:\t1" in default, default
    assert b"UID=65534" in locked and b"ROOT-READONLY" in locked, locked
    assert b"TMP-OK" in locked and b"ROOM-OK" in locked, locked  # tmpfs /tmp; shared room


@pytest.mark.bubblewrap
async def test_bubblewrap_sandbox_identity(bubblewrap_runtime: str, tmp_path: Path, in_process_hub):
    config = page_config(
        tmp_path,
        bubblewrap_runtime,
        f"""
        [x.probe]
        type = "once"
        command = ["sh", "-c", "{PROBE}; ls /home /root 2>&1 | head -3; ps -e | wc -l"]
    """,
    )
    async with in_process_hub(config) as hub:
        _, out = await run_once(hub.ws, "r1", "probe")
    assert b"UID=1000" in out and b"HOST=room" in out, out
    assert b"CapEff:\t0000000000000000" in out and b"NoNewPrivs:\t1" in out, out
    assert b"ROOT-READONLY" in out and b"TMP-OK" in out and b"ROOM-OK" in out, out
    assert b"No such file" in out, out  # /home and /root are not in the sandbox
    assert int(out.split()[-1]) <= 6, out  # own pid namespace: bwrap, sh, ps, wc, header
