"""Security at the door, the command line, and shutdown, through the real `roomhub` command."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
import websockets

from hubtest import SRC, write_config
from pageclient import PageClient

CAT_PAGE = """
[pages."/p"]
html = "page.html"
[pages."/p".executors.cat]
type = "always"
command = ["cat"]
"""
SECURE = """
[server]
allowed_origins = ["https://docs.example.org"]
[server.auth]
tokens = ["s3cret-token"]
secret_key = "0123456789abcdef0123456789abcdef"
""" + CAT_PAGE


def roomhub(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "roomhub", *args], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )


def test_token_auth_on_http_and_websocket(tmp_path, hub_process):
    hub = hub_process(write_config(tmp_path / "cfg", SECURE))
    assert httpx.get(f"{hub.base}/api/health").status_code == 200  # liveness stays public
    missing = httpx.get(f"{hub.base}/api/rooms")
    assert missing.status_code == 401 and "missing token" in missing.json()["detail"]
    for token, status in (("nope", 401), ("s3cret-token", 200)):
        response = httpx.get(f"{hub.base}/api/rooms", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == status
    assert httpx.get(f"{hub.base}/p", cookies={"roomhub_token": "s3cret-token"}).status_code == 200
    signed = roomhub("token", str(tmp_path / "cfg" / "roomhub.toml")).stdout.strip()
    assert httpx.get(f"{hub.base}/api/rooms", params={"token": signed}).status_code == 200

    async def sockets() -> None:
        with pytest.raises(websockets.InvalidStatus) as info:
            await websockets.connect(f"{hub.ws}/p/ws?roomName=r", open_timeout=5)
        assert info.value.response.status_code == 401
        c = await PageClient.connect(f"{hub.ws}/p/ws?roomName=r&token=s3cret-token")
        await c.wait_type(None, "joined")
        await c.close()
        c = await PageClient.connect(
            f"{hub.ws}/p/ws?roomName=r", additional_headers={"Authorization": f"Bearer {signed}"}
        )
        await c.wait_type(None, "joined")
        await c.close()

    asyncio.run(sockets())


def test_websocket_origin_allow_list(tmp_path, hub_process):
    hub = hub_process(write_config(tmp_path / "cfg", SECURE))
    url = f"{hub.ws}/p/ws?roomName=r&token=s3cret-token"

    async def sockets() -> None:
        with pytest.raises(websockets.InvalidStatus) as info:
            await websockets.connect(url, origin="https://evil.example.com", open_timeout=5)
        assert info.value.response.status_code == 403
        assert b"not allowed" in info.value.response.body
        for origin in (f"http://127.0.0.1:{hub.port}", "https://docs.example.org"):
            c = await PageClient.connect(url, origin=origin)
            await c.wait_type(None, "joined")
            await c.close()

    asyncio.run(sockets())
    assert "origin https://evil.example.com is not allowed" in hub.log()


def test_check_reports_every_error_with_its_key_path(tmp_path):
    bad = write_config(tmp_path, """
[server]
port = "eighty"
colour = "blue"
[pages."/p"]
html = "page.html"
[pages."/p".executors.t]
type = "always"
command = []
tty = "maybe"
[pages."/p".executors.o]
type = "sometimes"
command = ["x"]
""")
    result = roomhub("check", str(bad))
    assert result.returncode == 1
    err = result.stderr
    for expected in (
        "server.port", "server.colour", "Extra inputs are not permitted",
        'pages."/p".executors.t.command', 'pages."/p".executors.t.tty', 'pages."/p".executors.o',
    ):
        assert expected in err, (expected, err)
    good = roomhub("check", str(Path(SRC) / "roomhub" / "demo" / "roomhub.toml"))
    assert good.returncode == 0 and "valid" in good.stdout
    broken = tmp_path / "broken.toml"
    broken.write_text("[server\n")
    result = roomhub("check", str(broken))
    assert result.returncode == 1 and "not valid TOML" in result.stderr


def test_process_runtime_refuses_a_non_loopback_bind(tmp_path):
    cfg = write_config(tmp_path, '[pages."/p"]\nhtml = "page.html"\n')
    result = roomhub("serve", str(cfg), "--host", "0.0.0.0", "--port", "0", "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 2
    assert "refusing to bind to 0.0.0.0" in result.stderr and "allow-non-loopback" in result.stderr


def test_backends_refuse_a_non_loopback_bind_even_with_sandboxed_pages(tmp_path):
    """Backends built as virtual environments (the shipped pyrun_backend runs any Python it is
    sent) run as the hub's user, whatever runtime the pages use."""
    cfg = write_config(tmp_path, '[runtime]\ndefault = "bubblewrap"\n' + CAT_PAGE + "[backends]\n")
    result = roomhub("serve", str(cfg), "--host", "0.0.0.0", "--port", "0", "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 2, result.stderr
    assert "refusing to bind to 0.0.0.0" in result.stderr
    assert "backends built as virtual environments" in result.stderr and "pyrun_backend" in result.stderr
    assert "'process' runtime" not in result.stderr  # the pages are sandboxed: not named


def marked_processes(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            if (proc.info["environ"] or {}).get("ROOMHUB_TEST_MARK") == marker:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_shutdown_tears_rooms_down_runs_epilogues_and_leaves_no_process(tmp_path, hub_process, sig):
    marker = f"roomhub-marker-{os.getpid()}-{sig.value}"
    cfg = write_config(tmp_path / "cfg", f"""
[pages."/p"]
html = "page.html"
[pages."/p".executors.term]
type = "always"
tty = true
command = ["bash", "--norc", "-i"]
env = {{ ROOMHUB_TEST_MARK = "{marker}" }}
[pages."/p".executors.sleeper]
type = "always"
command = ["sh", "-c", "sleep 1000; true"]
env = {{ ROOMHUB_TEST_MARK = "{marker}" }}
[pages."/p".executors.job]
type = "once"
command = ["sh", "-c", "sleep 1001; true"]
env = {{ ROOMHUB_TEST_MARK = "{marker}" }}
[pages."/p".executors.bye]
type = "epilogue"
command = ["sh", "-c", "echo epilogue-ran"]
""")
    hub = hub_process(cfg)

    async def open_rooms() -> list[PageClient]:
        clients = []
        for room in ("a", "b"):
            c = await PageClient.connect(f"{hub.ws}/p/ws?roomName={room}")
            await c.send("job")
            await c.wait_type("job", "started")
            # A background child of the terminal's shell, in the same process group.
            await c.stdin("term", "sleep 1002 &\n")
            clients.append(c)
        deadline = time.monotonic() + 10
        while len(marked_processes(marker)) < 10 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return clients

    async def run() -> None:
        clients = await open_rooms()
        assert len(marked_processes(marker)) >= 10  # per room: bash, sleep, 2 sh, 2 sleep
        started = time.monotonic()
        hub.proc.send_signal(sig)
        code = await asyncio.to_thread(hub.proc.wait, 30)
        assert code == 0
        assert time.monotonic() - started < 15
        for c in clients:
            with pytest.raises(websockets.ConnectionClosed):
                await c.wait_for(lambda f: False, timeout=5)

    asyncio.run(run())
    time.sleep(0.2)
    assert marked_processes(marker) == []
    log = hub.log()
    assert log.count("epilogue 'bye' ended (exit code 0): epilogue-ran") == 2
    assert "shutdown complete" in log
