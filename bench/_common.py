"""What the pages benchmarks share: a hub subprocess on a free loopback port, statistics, output.

A benchmark builds a configuration with :func:`page_config` (TOML text, one or
more pages), starts the real command line ``python -m roomhub serve`` with
:class:`HubProcess`, drives it with ``websockets`` clients, and ends with
:func:`report` (a table for people, one JSON line for machines).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Coroutine, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

import psutil

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
if str(SRC) not in sys.path:  # benchmarks may reuse the hub's own helpers (e.g. its preexec_fn)
    sys.path.insert(0, str(SRC))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def toml_value(value: Any) -> str:
    """A TOML literal for a str, bool, number, list or inline table (JSON strings are TOML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
        )
    raise TypeError(f"no TOML literal for {value!r}")


def page_config(
    pages: dict[str, dict[str, dict[str, Any]]],
    *,
    limits: dict[str, Any] | None = None,
) -> str:
    """TOML text for a hub serving ``pages`` (path -> executor name -> executor keys).

    Every page uses ``page.html`` next to the configuration file (see
    :func:`write_config`); ``limits`` goes to ``[server.limits]``.
    """
    lines = ["[server]", 'host = "127.0.0.1"', "", "[server.limits]"]
    lines += [f"{key} = {toml_value(value)}" for key, value in (limits or {}).items()]
    lines += ["", "[runtime]", 'default = "process"']
    for path, executors in pages.items():
        lines += ["", f"[pages.{json.dumps(path)}]", 'html = "page.html"']
        for name, keys in executors.items():
            lines += ["", f"[pages.{json.dumps(path)}.executors.{json.dumps(name)}]"]
            lines += [f"{key} = {toml_value(value)}" for key, value in keys.items()]
    return "\n".join(lines) + "\n"


def hub_argv(config: Path, port: int, data_dir: Path, *extra: str) -> list[str]:
    """The hub's real command line: ``python -m roomhub serve CONFIG --port N --data-dir D ...``."""
    return [sys.executable, "-m", "roomhub", "serve", str(config), "--port", str(port),
            "--data-dir", str(data_dir), *extra]


def write_config(directory: Path, toml_text: str) -> Path:
    """Write ``roomhub.toml`` and a minimal ``page.html`` into ``directory``; return the TOML."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "page.html").write_text("<!doctype html><title>bench</title><p>bench page</p>\n")
    path = directory / "roomhub.toml"
    path.write_text(toml_text)
    return path


class ServerProcess:
    """A server subprocess on a free 127.0.0.1 port, measured from outside (psutil).

    Use as a context manager: it waits (up to ``start_timeout`` seconds) until
    :meth:`ready`, and on exit sends SIGTERM and waits for a clean shutdown
    (SIGKILL after ``stop_timeout`` seconds). Output goes to
    ``workdir/<name>.log``. Subclasses give :meth:`argv` and :meth:`ready`.
    ``src`` is the source folder put on its ``PYTHONPATH`` (default: this tree's).
    """

    name = "server"

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        start_timeout: float = 30.0,
        stop_timeout: float = 30.0,
        src: Path | None = None,
    ) -> None:
        self.src = src or SRC
        self._tmp = (
            None if workdir is not None else tempfile.TemporaryDirectory(prefix="roomhub-bench-")
        )
        self.workdir = workdir if workdir is not None else Path(self._tmp.name)  # type: ignore[union-attr]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log_path = self.workdir / f"{self.name}.log"
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.ps: psutil.Process | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        """True once the server accepts connections (default: its port accepts TCP)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True

    def __enter__(self) -> Self:
        env = {**os.environ, "PYTHONPATH": str(self.src)}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, env=env)
        self.ps = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError):
                if self.ready():
                    return self
            time.sleep(0.05)
        self.__exit__(None, None, None)
        raise RuntimeError(f"{self.name} not ready within {self.start_timeout} s:\n{self.log()}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._tmp is not None:
            self._tmp.cleanup()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the server process itself (not of its children)."""
        assert self.ps is not None
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def rss(self) -> int:
        """Resident set size of the server process, bytes."""
        assert self.ps is not None
        return int(self.ps.memory_info().rss)

    def uss(self) -> int:
        """Unique set size of the server process (memory only it uses), bytes."""
        assert self.ps is not None
        return int(self.ps.memory_full_info().uss)

    def children(self) -> list[psutil.Process]:
        assert self.ps is not None
        return self.ps.children(recursive=True)


class HubProcess(ServerProcess):
    """The hub, started with its real command line ``python -m roomhub serve CONFIG``.

    ``toml_text`` is written to ``workdir/roomhub.toml`` (with ``page.html``);
    rooms live in ``workdir/data``; ready once ``/api/health`` answers.
    """

    name = "hub"

    def __init__(
        self,
        toml_text: str,
        workdir: Path | None = None,
        *,
        log_level: str = "warning",
        **kwargs: Any,
    ) -> None:
        super().__init__(workdir, **kwargs)
        self.config = write_config(self.workdir, toml_text)
        self.log_level = log_level

    def argv(self) -> list[str]:
        return hub_argv(self.config, self.port, self.workdir / "data", "--log-level", self.log_level)

    def ready(self) -> bool:
        return bool(self.get_json("/api/health").get("status") == "ok")

    def get_json(self, path: str, timeout: float = 5.0) -> Any:
        """GET ``path`` on the hub and decode its JSON body (blocking: call it off the loop)."""
        with urllib.request.urlopen(self.base + path, timeout=timeout) as response:
            return json.loads(response.read())


class ReferenceProcess(ServerProcess):
    """``bench/pages_reference.py``: bare ``websockets`` with the hub's data flow."""

    name = "reference"

    def __init__(
        self, *, queue: int = 1024, seconds: float = 10.0, loop: str = "uvloop", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.options = ["--queue", str(queue), "--seconds", str(seconds), "--loop", loop]

    def argv(self) -> list[str]:
        script = Path(__file__).with_name("pages_reference.py")
        return [sys.executable, str(script), "--port", str(self.port), *self.options]


def raise_open_files(wanted: int) -> int:
    """Raise this process's soft ``RLIMIT_NOFILE`` towards ``wanted`` (capped by the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values``, linear between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: Sequence[float]) -> dict[str, float]:
    """Count, min, median, p95, max and mean of ``values``."""
    return {
        "n": len(values),
        "min": min(values) if values else math.nan,
        "median": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values) if values else math.nan,
        "mean": sum(values) / len(values) if values else math.nan,
    }


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain-text table, columns right-aligned except the first."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return (
                "nan"
                if math.isnan(value)
                else f"{value:,.2f}"
                if abs(value) < 1e6
                else f"{value:,.0f}"
            )
        return str(value)

    body = [[cell(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in body)) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.ljust(widths[i]) if i == 0 else v.rjust(widths[i]) for i, v in enumerate(values)
        )

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in body)])


def report(
    name: str, headers: Sequence[str], rows: Sequence[Sequence[Any]], data: dict[str, Any]
) -> None:
    """Print the table, then one JSON line ``{"bench": name, ...data}``."""
    print(table(headers, rows))
    print(json.dumps({"bench": name, **data}, default=_json_default, separators=(",", ":")))


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Path):
        return str(value)
    raise TypeError(repr(value))


def run(coro: Coroutine[Any, Any, T], loop: str = "uvloop") -> T:
    """Run ``coro`` to the end on the event loop ``loop`` ("uvloop", the hub's, or "asyncio").

    Falls back to asyncio's own loop when uvloop is not installed.
    """
    factory = None
    if loop == "uvloop":
        with contextlib.suppress(ImportError):
            import uvloop

            factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def loop_name(loop: str) -> str:
    """The loop :func:`run` will really use for ``loop``."""
    if loop != "uvloop":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (ERROR|WARNING|CRITICAL)\s+([\w.]+): (.*)$")


def log_problems(text: str) -> dict[str, int]:
    """Warnings and errors of a hub log, counted by logger and message (numbers masked)."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        match = LOG_LINE.match(line)
        if match:
            level, logger, message = match.groups()
            message = re.sub(r"[0-9a-f]{6,}|\d+", "N", message)[:90]
            key = f"{level} {logger}: {message}"
            counts[key] = counts.get(key, 0) + 1
    return counts


def print_log_problems(problems: dict[str, int]) -> None:
    """Print what :func:`log_problems` found in a hub log, if anything."""
    if problems:
        print("hub log warnings/errors (count  line):")
        for key, count in sorted(problems.items(), key=lambda kv: -kv[1]):
            print(f"  {count:6d}  {key}")


def machine() -> dict[str, Any]:
    """Where the figures were measured: CPUs, Python, load average."""
    return {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


@contextlib.contextmanager
def timer() -> Iterator[list[float]]:
    """``with timer() as t: ...`` then ``t[0]`` is the elapsed wall time, seconds."""
    out: list[float] = []
    started = time.perf_counter()
    try:
        yield out
    finally:
        out.append(time.perf_counter() - started)


@contextlib.contextmanager
def postgres(dsn: str | None) -> Iterator[str]:
    """``dsn`` itself, or without one a private PostgreSQL cluster for the ``with`` block
    (Debian's server in a temporary folder, started as the tests start theirs,
    ``tests/services.py``, with fsync on): its connection string."""
    if dsn:
        yield dsn
        return
    if str(ROOT / "tests") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests"))
    from services import running, start_postgres

    with running("roomhub-bench-postgres-", lambda folder: start_postgres(folder, fsync=True)) as server:
        yield server.dsn()
