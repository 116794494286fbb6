"""Widgets face against pgwidgets-python 0.4.2, same scripted browser, same run.

Measures, with a scripted browser (websockets client) that answers at once:

- widget method calls per second from one session (``label.set_text`` in a
  loop; roomhub pipelined under flow control, and awaited one by one);
- the same over 20 sessions at once;
- click -> ``set_text`` round-trip latency p50/p99 with 20 concurrent sessions.

pgwidgets-python needs Python >= 3.12: a python3.12 interpreter is looked up
(PATH, then pyenv) and a virtualenv with pgwidgets-python==0.4.2 is made in
``~/.cache/roomhub-bench`` (pip, from PyPI). Without one, only roomhub runs and
the script says so. Both servers run side by side and are measured in
alternating rounds (roomhub then pgwidgets, then the other way round...), so
that a change in the machine's load weighs on both alike; the table gives the
median of the rounds. Prints a table, then JSON (with every round's figures).

    python bench/widgets_bench.py [--calls 10000] [--clicks 200] [--sessions 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import websockets

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
PGW_VERSION = "0.4.2"
LABEL, CLICK, RUN, RUN_WAIT = 1, 2, 3, 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_python312() -> str | None:
    candidates = [shutil.which("python3.12"), shutil.which("python3.13")]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[2-9]*/bin/python3")))
    for c in candidates:
        if not c:
            continue
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [c, "-c", "import sys; print(sys.version_info >= (3, 12))"],
                capture_output=True,
                text=True,
                timeout=20,
            )
            if out.stdout.strip() == "True":
                return c
    return None


def pgwidgets_python() -> tuple[str | None, str]:
    """A python with pgwidgets-python installed, or (None, why not)."""
    base = find_python312()
    if base is None:
        return None, "no Python >= 3.12 interpreter found (pgwidgets-python needs one)"
    venv = (
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "roomhub-bench"
        / f"pgwidgets-{PGW_VERSION}"
    )
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import pgwidgets.async_"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return str(python), f"{base}, venv {venv}"
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"pgwidgets-python=={PGW_VERSION}"],
        capture_output=True,
        text=True,
    )
    if pip.returncode != 0:
        return (
            None,
            f"pip could not install pgwidgets-python=={PGW_VERSION}: {pip.stderr.strip()[-300:]}",
        )
    return str(python), f"{base}, venv {venv}"


class Browser:
    """Answers every message at once; notes the label's set_text calls."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.listens = 0
        self.set_texts = 0
        self.changed = asyncio.Event()

    @classmethod
    async def open(cls, url: str) -> Browser:
        ws = await websockets.connect(url, max_size=None, compression=None)
        b = cls(ws)
        await ws.recv()  # init
        await ws.send('{"type":"result","id":0}')
        b.task = asyncio.create_task(b.read())
        return b

    async def read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for frame in self.ws:
                data = json.loads(frame)
                for msg in data if isinstance(data, list) else [data]:
                    kind = msg.get("type")
                    if kind == "session-info":
                        continue
                    if kind == "listen" and msg.get("action") == "activated":
                        self.listens += 1
                    elif kind == "call" and msg.get("wid") == LABEL:
                        self.set_texts += 1
                    await self.ws.send(f'{{"type":"result","id":{msg["id"]}}}')
                self.changed.set()

    async def until(self, predicate: Any, timeout: float = 120) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    async def click(self, wid: int) -> None:
        await self.ws.send(f'{{"type":"callback","wid":{wid},"action":"activated","args":[]}}')


async def ready(url: str) -> Browser:
    b = await Browser.open(url)
    await b.until(lambda: b.listens >= 3, 30)
    return b


async def calls_per_second(url: str, n: int, button: int, sessions: int = 1) -> float:
    browsers = [await ready(url) for _ in range(sessions)]
    started = time.perf_counter()
    for b in browsers:
        await b.click(button)
    await asyncio.gather(*(b.until(lambda b=b: b.set_texts >= n) for b in browsers))
    elapsed = time.perf_counter() - started
    for b in browsers:
        await b.ws.close()
    return n * sessions / elapsed


async def click_latency(url: str, sessions: int, clicks: int) -> tuple[float, float]:
    browsers = [await ready(url) for _ in range(sessions)]
    samples: list[float] = []

    async def one(b: Browser) -> None:
        for _ in range(clicks):
            seen = b.set_texts
            t0 = time.perf_counter()
            await b.click(CLICK)
            await b.until(lambda seen=seen: b.set_texts > seen, 30)
            samples.append(time.perf_counter() - t0)

    await asyncio.gather(*(one(b) for b in browsers))
    for b in browsers:
        await b.ws.close()
    qs = statistics.quantiles(samples, n=100)
    return qs[49] * 1000, qs[98] * 1000


def start(args: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    log = tempfile.NamedTemporaryFile(prefix="widgets-bench-", suffix=".log", delete=False)
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{args[1]} exited, see {log.name}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return proc
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{args[1]} did not start")


async def measure(url: str, opts: argparse.Namespace, wait_variant: bool) -> dict[str, float]:
    out = {"calls_per_s_1_session": await calls_per_second(url, opts.calls, RUN)}
    if wait_variant:
        out["calls_per_s_1_session_awaited"] = await calls_per_second(url, opts.calls, RUN_WAIT)
    out[f"calls_per_s_{opts.sessions}_sessions"] = await calls_per_second(
        url, opts.calls // 4, RUN, opts.sessions
    )
    p50, p99 = await click_latency(url, opts.sessions, opts.clicks)
    out["click_p50_ms"], out["click_p99_ms"] = p50, p99
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10000)
    parser.add_argument("--clicks", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median shown)")
    opts = parser.parse_args()
    rounds: dict[str, list[dict[str, float]]] = {}
    servers: dict[str, tuple[str, bool]] = {}  # name -> (socket URL, measure the awaited variant)
    procs = []
    try:
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        procs.append(
            start(
                [sys.executable, str(HERE / "widgets_app_roomhub.py"), str(port), str(opts.calls)],
                env,
                port,
            )
        )
        servers["roomhub"] = (f"ws://127.0.0.1:{port}/widgets/ws", True)
        python, how = pgwidgets_python()
        print(f"pgwidgets-python {PGW_VERSION}: {how if python else 'NOT RUN: ' + how}")
        if python:
            port = free_port()
            procs.append(
                start(
                    [python, str(HERE / "widgets_app_pgwidgets.py"), str(port), str(opts.calls)],
                    {**os.environ},
                    port,
                )
            )
            servers["pgwidgets"] = (f"ws://127.0.0.1:{port}/", False)
        names = list(servers)
        for r in range(opts.rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                url, wait_variant = servers[name]
                rounds.setdefault(name, []).append(asyncio.run(measure(url, opts, wait_variant)))
    finally:
        for proc in procs:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
    results = {
        name: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        for name, runs in rounds.items()
    }
    keys = list(results["roomhub"])
    print(f"\n{'metric':34} {'roomhub':>12} {'pgwidgets':>12} {'ratio':>8}")
    for key in keys:
        ours, theirs = results["roomhub"][key], results.get("pgwidgets", {}).get(key)
        ratio = ""
        if theirs:
            ratio = f"{(theirs / ours if 'ms' in key else ours / theirs):.2f}x"
        shown = theirs if theirs is not None else float("nan")
        print(f"{key:34} {ours:12.1f} {shown:12.1f} {ratio:>8}")
    print(f"(median of {opts.rounds} alternating rounds; ratio: how many times better roomhub is;")
    print(" for latencies pgwidgets/roomhub)")
    print(
        json.dumps(
            {
                "calls": opts.calls,
                "clicks": opts.clicks,
                "sessions": opts.sessions,
                "rounds": rounds,
                **results,
            }
        )
    )


if __name__ == "__main__":
    main()
