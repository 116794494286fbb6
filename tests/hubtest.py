"""Hub test helpers: a real hub on loopback, started as a subprocess or inside the test's loop.

Import helpers from here (`from hubtest import write_config`); conftest.py only registers the fixtures.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

ROOT = Path(__file__).resolve().parent.parent

# Debian's Chromium, as the browser tests launch it (no download, no sandbox as root, no
# background connections: this machine's network is closed).
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SRC = ROOT / "src"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(directory: Path, body: str, html: str = "<!doctype html><p>page</p>") -> Path:
    """Write ``roomhub.toml`` (dedented ``body``) and a ``page.html`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "page.html").write_text(html)
    path = directory / "roomhub.toml"
    path.write_text(textwrap.dedent(body))
    return path


async def eventually(check: Callable[[], Any], within: float = 10.0, *, interval: float = 0.01,
                     what: str = "") -> Any:
    """Poll ``check`` (a function, or one returning an awaitable) every ``interval`` seconds until it
    returns a truthy value, and return that value; AssertionError after ``within`` seconds.
    For state changes in the hub that have no event a test could await."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what or check} (last {value!r})")
        await asyncio.sleep(interval)


async def close_of(ws: Any, within: float = 20.0) -> tuple[int, str]:
    """Read a ``websockets`` client connection ``ws`` until the server closes it; the close frame's
    ``(code, reason)`` the client received, ``(1006, "")`` when the TCP connection ended without one.
    AssertionError if it is still open after ``within`` seconds."""
    import websockets

    try:
        async with asyncio.timeout(within):
            while True:
                await ws.recv()
    except websockets.ConnectionClosed as exc:
        received = exc.rcvd
        return (received.code, received.reason) if received is not None else (1006, "")
    except TimeoutError:
        raise AssertionError(f"the server did not close the connection within {within} s") from None


async def raw_exchange(port: int, request: bytes, within: float = 20.0) -> bytes:
    """Send ``request`` (bytes as they are, e.g. with forged or malformed headers) to 127.0.0.1:``port``
    and return every byte received until the server closes the connection (ask for it with
    ``Connection: close``); AssertionError if it stays open ``within`` seconds."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        async with asyncio.timeout(within):
            return await reader.read(-1)
    except TimeoutError:
        raise AssertionError(f"the server kept the connection open for {within} s") from None
    finally:
        writer.close()


class OnLoopback:
    """URLs of a hub listening on 127.0.0.1:``port``."""

    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


@dataclass
class HubProcess(OnLoopback):
    """A hub started with ``python -m roomhub serve`` (the real command line)."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def start_hub_process(
    config: Path | None, tmp: Path, *extra: str, env: dict[str, str] | None = None,
    port: int | None = None,
) -> HubProcess:
    """``python -m roomhub serve`` on ``port`` (default: a free one), data in ``tmp/data``."""
    port = port or free_port()
    log_path = tmp / f"hub-{port}.log"
    args = [sys.executable, "-m", "roomhub", "serve"]
    if config is not None:
        args.append(str(config))
    args += ["--port", str(port), "--data-dir", str(tmp / "data"), *extra]
    full_env = {**os.environ, "PYTHONPATH": str(SRC), **(env or {})}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    hub = HubProcess(proc, port, log_path)
    wait_serving(proc, f"{hub.base}/api/health", hub.log, 20)
    return hub


def wait_serving(proc: subprocess.Popen[bytes], url: str, log: Callable[[], str], within: float) -> None:
    """Wait until ``url`` answers 200 (a server ``proc`` started); RuntimeError with ``log()`` if
    ``proc`` exits first, or (``proc`` killed) after ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}:\n{log()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{url} did not answer within {within} s:\n{log()}")


def serve_refused(config: Path | None, data_dir: Path, *extra: str,
                  within: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``python -m roomhub serve`` on a free port, expecting it to refuse to start: its exit
    status and output. AssertionError (the hub killed) if it is still running after ``within``
    seconds."""
    args = [sys.executable, "-m", "roomhub", "serve"]
    if config is not None:
        args.append(str(config))
    args += ["--port", str(free_port()), "--data-dir", str(data_dir), *extra]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        out, _ = proc.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"roomhub serve did not refuse to start within {within} s:\n{out}") from None
    return subprocess.CompletedProcess(args, proc.returncode, out, "")


@pytest.fixture
def hub_process(tmp_path: Path) -> Iterator[Callable[..., HubProcess]]:
    """Factory: ``hub_process(config_path, *cli_args)`` -> a running :class:`HubProcess`."""
    started: list[HubProcess] = []

    def start(config: Path | None, *extra: str, env: dict[str, str] | None = None,
              port: int | None = None) -> HubProcess:
        hub = start_hub_process(config, tmp_path, *extra, env=env, port=port)
        started.append(hub)
        return hub

    yield start
    for hub in started:
        if hub.proc.poll() is None:
            hub.proc.send_signal(signal.SIGTERM)
            try:
                hub.proc.wait(30)
            except subprocess.TimeoutExpired:
                hub.proc.kill()


@dataclass
class InProcessHub(OnLoopback):
    """A hub served by uvicorn inside the test's event loop."""

    hub: object
    port: int


@contextlib.asynccontextmanager
async def serve_in_loop(config_path: Path, data_dir: Path) -> AsyncIterator[InProcessHub]:
    """Run the hub for ``config_path`` in this event loop; stop it (lifespan shutdown) on exit."""
    from roomhub.app import server_config
    from roomhub.config import load_config
    from roomhub.hub import Hub

    config = load_config(config_path)
    config.server.data_dir = data_dir
    port = free_port()
    hub = Hub(config)
    async with serve_uvicorn(server_config(hub, host="127.0.0.1", port=port, loop="asyncio")):
        yield InProcessHub(hub, port)


@contextlib.asynccontextmanager
async def serve_uvicorn(config: uvicorn.Config, stop_timeout: float = 60.0) -> AsyncIterator[None]:
    """Serve ``config`` in this event loop until the block ends (then a graceful stop)."""
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server stopped during start-up")
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, stop_timeout)


@pytest.fixture
def in_process_hub(tmp_path: Path) -> Callable[[Path], contextlib.AbstractAsyncContextManager[InProcessHub]]:
    """Factory: ``async with in_process_hub(config_path) as h:`` serves a hub in the test's loop."""
    return lambda config_path: serve_in_loop(config_path, tmp_path / "data")


# Module scope: sync Playwright keeps an event loop running in this thread while it is open,
# which asyncio tests of other modules cannot share.
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's Chromium through sync Playwright; fails in CI (skips elsewhere) when it is missing."""
    playwright_sync = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: apt-get install -y chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with playwright_sync.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def original(repo: str) -> Path:
    """The unpacked snapshot of an original client's repository (``"owner+name"``), as
    ``scripts/setup-originals.sh`` leaves it under ``tests/originals/``; skips the test, saying
    why, when it is not there."""
    path = ROOT / "tests" / "originals" / repo
    if not (path / ".commit").is_file():
        pytest.skip(f"original {repo} not unpacked: run scripts/setup-originals.sh (it needs a mirror "
                    "of the repository's snapshot, see the script)")
    return path
