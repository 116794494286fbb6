"""A private haproxy (Debian's package) in round-robin mode in front of hubs, for the cluster's
end-to-end tests; and the fixture that starts three hubs of one cluster behind it.

:func:`start_haproxy` writes a configuration in a temporary folder and runs ``haproxy -db`` (in the
foreground, no daemon) on a free loopback port: HTTP mode, ``balance roundrobin`` (each request and
each WebSocket handshake goes to the next hub), WebSocket-friendly timeouts (``timeout tunnel``: an
idle WebSocket is not cut), health checks on ``/api/health`` every 200 ms (a killed hub is taken out
after two failed checks) and ``option redispatch`` with retries (a connection refused, or reset
with no response, by a dead hub before its checks failed is tried on the next one).

``cluster_behind_haproxy`` (fixture): three real ``roomhub serve`` processes with a ``[cluster]``
configuration (the session's Redis, a fresh PostgreSQL database) behind one haproxy.

A missing ``haproxy`` fails the test in CI (``CI`` set) and skips it elsewhere, as the services of
:mod:`services` do.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from hubtest import HubProcess, OnLoopback, free_port, start_hub_process
from services import terminate

STARTUP_TIMEOUT = 20.0  # seconds


def haproxy_config(port: int, backends: list[int]) -> str:
    """haproxy's configuration: 127.0.0.1:``port`` balanced round-robin over 127.0.0.1:``backends``."""
    servers = "\n".join(
        f"    server hub{i} 127.0.0.1:{p} check inter 200ms fall 2 rise 1"
        for i, p in enumerate(backends)
    )
    return textwrap.dedent("""\
        global
            maxconn 4096
        defaults
            mode http
            timeout connect 2s
            timeout client 60s
            timeout server 60s
            # an established WebSocket is a tunnel: idle for this long before haproxy cuts it
            timeout tunnel 1h
            timeout client-fin 1s
            timeout server-fin 1s
            option redispatch
            retries 3
            # a hub killed while haproxy connects to it may accept and then reset the connection:
            # the request (a GET, a WebSocket handshake) is tried again, on the next hub
            retry-on conn-failure empty-response junk-response response-timeout
        frontend hubs
            bind 127.0.0.1:{port}
            default_backend hubs
        backend hubs
            balance roundrobin
            option httpchk
            http-check send meth GET uri /api/health ver HTTP/1.1 hdr Host 127.0.0.1
            http-check expect status 200
        {servers}
        """).format(port=port, servers=servers)


@dataclass
class Balancer(OnLoopback):
    """A running haproxy on 127.0.0.1:``port``."""

    proc: subprocess.Popen[bytes]
    port: int
    folder: Path

    def log(self) -> str:
        path = self.folder / "haproxy.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        terminate(self.proc)


def start_haproxy(folder: Path, backends: list[int]) -> Balancer:
    """Start haproxy in front of ``backends`` (loopback ports) with its configuration in ``folder``;
    RuntimeError with its output if it does not accept connections within :data:`STARTUP_TIMEOUT`
    seconds."""
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(binary).exists():
        raise FileNotFoundError("haproxy")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = folder / "haproxy.cfg"
    config.write_text(haproxy_config(port, backends))
    with open(folder / "haproxy.log", "wb") as log:
        proc = subprocess.Popen([binary, "-db", "-f", str(config)], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT)
    balancer = Balancer(proc, port, folder)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{balancer.base}/api/health", timeout=1).status_code == 200:
                return balancer
        if proc.poll() is not None or time.monotonic() > deadline:
            balancer.stop()
            raise RuntimeError(f"haproxy did not start on port {port}:\n{balancer.log()}")
        time.sleep(0.05)


def cluster_config(directory: Path, redis_url: str, dsn: str) -> Path:
    """A hub of a cluster serving documents (PostgreSQL store; the cluster tests' configuration)
    and the demo's shared editor page at ``/editor``."""
    from tests.cluster.test_documents_cluster import config

    editor = Path(__file__).resolve().parents[1] / "src" / "roomhub" / "demo" / "editor.html"
    path = config(directory, redis_url, dsn)
    path.write_text(path.read_text().replace("[cluster]", f'[pages."/editor"]\nhtml = "{editor}"\n[cluster]'))
    return path


@dataclass
class ClusterBehindBalancer:
    """Hubs of one cluster and the haproxy in front of them."""

    hubs: list[HubProcess]
    balancer: Balancer
    ids: list[str] = field(default_factory=list)  # each hub's id, as /api/health gives it

    def local_members(self, room: str) -> dict[int, int]:
        """Live hub index -> how many members of ``room`` are connected to that hub itself (from
        its ``/api/rooms``, whose entries name their hub)."""
        counts = {}
        for i, hub in enumerate(self.hubs):
            if hub.proc.poll() is None:
                rooms = httpx.get(f"{hub.base}/api/rooms", timeout=5).json()
                counts[i] = sum(r["clients"] for r in rooms if r["name"] == room and r["hub"] == self.ids[i])
        return counts


@pytest.fixture
def cluster_behind_haproxy(tmp_path: Path, redis_url: str,
                           postgres_dsn: str) -> Iterator[Callable[..., ClusterBehindBalancer]]:
    """Factory: ``cluster_behind_haproxy(count=3)`` starts ``count`` hubs (``roomhub serve``, one
    cluster configuration) and haproxy in front of them; all stopped after the test."""
    if shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").exists():
        message = "haproxy is missing: run scripts/setup-system.sh (Debian's haproxy)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    started: list[HubProcess] = []
    balancers: list[Balancer] = []

    def start(count: int = 3) -> ClusterBehindBalancer:
        config = cluster_config(tmp_path / "conf", redis_url, postgres_dsn)
        for i in range(count):
            folder = tmp_path / f"hub{i}"
            folder.mkdir()
            started.append(start_hub_process(config, folder))
        balancers.append(start_haproxy(tmp_path / "haproxy", [h.port for h in started]))
        ids = [httpx.get(f"{h.base}/api/health").json()["hub"] for h in started]
        return ClusterBehindBalancer(list(started), balancers[0], ids)

    try:
        yield start
    finally:
        for balancer in balancers:
            balancer.stop()
        for hub in started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                hub.stop()
            if hub.proc.poll() is None:
                hub.proc.kill()
