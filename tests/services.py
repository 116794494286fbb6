"""Private Redis and PostgreSQL servers for the tests: real servers (Debian's packages), on loopback.

One Redis and one PostgreSQL cluster are started per test session, each in a temporary folder of its
own and on a free port, and stopped at its end. Fixtures:

- ``redis_url``: ``redis://127.0.0.1:PORT/0``, emptied (FLUSHALL) before each test;
- ``postgres_dsn``: ``postgresql://roomhub@127.0.0.1:PORT/DB``, a fresh database per test, dropped
  after it.

A missing server binary fails the test in CI (``CI`` set) and skips it elsewhere; a server that is
installed but does not start always fails the test, with its log. ``scripts/setup-system.sh``
installs both servers. PostgreSQL refuses to run as root: as root the cluster runs as ``nobody``.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from hubtest import free_port

Service = TypeVar("Service", "RedisServer", "PostgresServer")
STARTUP_TIMEOUT = 30.0  # seconds; a loaded 2-core machine starts a cluster in 1-3 s


def _missing(what: str) -> None:
    message = f"{what} is missing: run scripts/setup-system.sh (Debian's redis-server and postgresql)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def postgres_bin() -> Path | None:
    """The folder of Debian's PostgreSQL server programs (the newest installed), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def terminate(proc: subprocess.Popen[bytes]) -> None:
    """End ``proc`` with SIGTERM (SIGKILL if it is still running 10 s later) and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class RedisServer:
    """A ``redis-server`` on 127.0.0.1:``port`` with no persistence, in its own folder."""

    proc: subprocess.Popen[bytes]
    port: int
    folder: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def log(self) -> str:
        path = self.folder / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        terminate(self.proc)


def start_redis(folder: Path, port: int | None = None) -> RedisServer:
    """Start ``redis-server`` on ``port`` (default: a free one; no RDB or AOF file, so a restart
    starts empty); RuntimeError with its log if it does not answer PING within
    :data:`STARTUP_TIMEOUT` seconds."""
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server")
    port = port or free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(folder), "--logfile", str(folder / "redis.log")]
    server = RedisServer(subprocess.Popen(args, stdin=subprocess.DEVNULL), port, folder)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    client = redis.Redis(port=port, socket_timeout=1)
    try:
        while True:
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                if client.ping():
                    return server
            if server.proc.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"redis-server did not start on port {port}:\n{server.log()}")
            time.sleep(0.05)
    finally:
        client.close()


@dataclass
class PostgresServer:
    """A private PostgreSQL cluster in ``folder/data``, on 127.0.0.1:``port`` (trust auth, user
    ``roomhub``), its socket in ``folder``."""

    bin: Path
    folder: Path
    port: int
    user: str | None  # the system user the cluster runs as (None: the current one)

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://roomhub@127.0.0.1:{self.port}/{database}"

    def log(self) -> str:
        path = self.folder / "postgres.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL program as the cluster's user."""
        as_user = {"user": self.user, "group": "nogroup", "extra_groups": []} if self.user else {}
        return subprocess.run(
            [str(self.bin / args[0]), *args[1:]], cwd=self.folder, capture_output=True, text=True,
            check=check, timeout=120, **as_user,
        )

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop", check=False)


def start_postgres(folder: Path, *, fsync: bool = False) -> PostgresServer:
    """``initdb`` a cluster in ``folder`` and start it on a free port (as ``nobody`` when run as
    root: the server refuses root). ``fsync=False`` (the tests' default) trades durability against
    a power loss, which no test exercises, for speed. RuntimeError with the log if it fails."""
    bindir = postgres_bin()
    if bindir is None:
        raise FileNotFoundError("/usr/lib/postgresql/*/bin/initdb")
    user = "nobody" if os.geteuid() == 0 else None
    if user is not None:
        shutil.chown(folder, user, "nogroup")
    port = free_port()
    server = PostgresServer(bindir, folder, port, user)
    data = str(folder / "data")
    try:
        server.run("initdb", "-D", data, "-U", "roomhub", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = (f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync={'on' if fsync else 'off'}"
                   " -c max_connections=200")
        server.run("pg_ctl", "-D", data, "-l", str(folder / "postgres.log"), "-o", options,
                   "-t", str(int(STARTUP_TIMEOUT)), "-w", "start")
    except subprocess.CalledProcessError as exc:
        server.stop()
        raise RuntimeError(
            f"PostgreSQL did not start ({exc.cmd[0]} exited {exc.returncode}):\n{exc.stdout}{exc.stderr}"
            f"{server.log()}"
        ) from None
    return server


@contextlib.contextmanager
def running(prefix: str, start: Callable[[Path], Service]) -> Iterator[Service]:
    """``start(folder)`` in a temporary folder directly under the system's temp folder (the
    cluster's user must reach it: pytest's own folders are private to the current user); the
    server stopped and the folder removed on exit."""
    # As root, /tmp itself: a TMPDIR private to root would keep the cluster's user (nobody) out.
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp" if os.geteuid() == 0 else None))
    try:
        server = start(folder)
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The session's Redis (see the module)."""
    if shutil.which("redis-server") is None:
        _missing("redis-server")
    with running("roomhub-redis-", start_redis) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied for this test: ``redis://127.0.0.1:PORT/0``."""
    import redis

    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL cluster (see the module)."""
    if postgres_bin() is None:
        _missing("PostgreSQL (/usr/lib/postgresql/*/bin)")
    with running("roomhub-postgres-", start_postgres) as server:
        yield server


_databases = itertools.count()


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database of the session's cluster for this test, dropped after it."""
    import psycopg

    name = f"test_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(postgres_server.dsn(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_server.dsn(name)
    finally:
        with psycopg.connect(postgres_server.dsn(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
