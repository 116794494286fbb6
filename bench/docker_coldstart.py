"""Docker runtime: room cold start and teardown, against ``docker run`` of the same image.

Measured in one run, on the same engine and image:

- hub cold start: a client joins a new room of a page with one ``always``
  container; time from opening the WebSocket to the first output frame;
- floor 1, ``docker run --rm --network none IMAGE sh -c 'echo ready'``: time
  from starting the CLI to its first line of output;
- floor 2, the Engine API without the CLI (aiodocker create, attach, start):
  what any client of the engine pays;
- teardown: a room with 3 ``always`` containers; time from the last client
  leaving to the engine listing none of the room's containers.

Needs a Docker engine and the test image (``scripts/setup-docker.sh``).
Usage: ``python bench/docker_coldstart.py [--runs 15] [--image IMAGE]``.
Prints a table and a JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import aiodocker
import httpx
import websockets
from _common import hub_argv

ROOT = Path(__file__).resolve().parent.parent
IMAGE = os.environ.get("ROOMHUB_TEST_IMAGE", "roomhub-test-busybox:latest")

CONFIG = """
[server]
log_level = "info"

[runtime]
default = "docker"

[runtime.docker]
image = "{image}"

[pages."/one"]
html = "page.html"

[pages."/one".executors.main]
type = "always"
command = ["sh", "-c", "echo ready; exec sleep 600"]

[pages."/three"]
html = "page.html"
{three}
"""

THREE = "".join(
    f"""
[pages."/three".executors.e{i}]
type = "always"
command = ["sh", "-c", "echo ready; exec sleep 600"]
"""
    for i in range(3)
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median_ms": statistics.median(values) * 1000,
        "p95_ms": pct(values, 0.95) * 1000,
        "min_ms": min(values) * 1000,
        "runs": len(values),
    }


async def first_output(ws_url: str, executors: int = 1) -> websockets.ClientConnection:
    """Open the room socket and return once ``executors`` distinct executors have printed."""
    ws = await websockets.connect(ws_url)
    seen: set[str] = set()
    while len(seen) < executors:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if (frame.get("message") or {}).get("type") == "output":
            seen.add(frame["executor"])
    return ws


async def room_containers(docker: aiodocker.Docker, room: str) -> int:
    filters = {"label": [f"roomhub.room={room}"]}
    return len(await docker.containers.list(all=True, filters=filters))


async def wait_gone(docker: aiodocker.Docker, room: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while await room_containers(docker, room):
        if time.monotonic() > deadline:
            raise TimeoutError(f"room {room} still has containers")
        await asyncio.sleep(0.01)


async def hub_cold_start(base: str, docker: aiodocker.Docker, runs: int) -> list[float]:
    times = []
    for i in range(runs):
        room = f"cold{i}"
        start = time.perf_counter()
        ws = await first_output(f"{base}/one/ws?roomName={room}")
        times.append(time.perf_counter() - start)
        await ws.close()
        await wait_gone(docker, f"/one:{room}")
    return times


async def docker_run_floor(image: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            *("docker", "run", "--rm", "--network", "none", image),
            *("sh", "-c", "echo ready; sleep 0.2"),
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        line = await proc.stdout.readline()
        times.append(time.perf_counter() - start)
        assert line.strip() == b"ready", line
        await proc.wait()
    return times


async def api_floor(docker: aiodocker.Docker, image: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        container = await docker.containers.create(
            {
                "Image": image,
                "Cmd": ["sh", "-c", "echo ready"],
                "AttachStdout": True,
                "AttachStderr": True,
                "HostConfig": {"NetworkMode": "none"},
            }
        )
        stream = container.attach(stdout=True, stderr=True)
        async with stream:
            await container.start()
            msg = await stream.read_out()
            times.append(time.perf_counter() - start)
            assert msg is not None and b"ready" in msg.data
        await container.wait()
        await container.delete(force=True)
    return times


async def teardown_three(base: str, docker: aiodocker.Docker, runs: int) -> list[float]:
    times = []
    for i in range(runs):
        room = f"three{i}"
        ws = await first_output(f"{base}/three/ws?roomName={room}", executors=3)
        assert await room_containers(docker, f"/three:{room}") == 3
        start = time.perf_counter()
        await ws.close()
        await wait_gone(docker, f"/three:{room}")
        times.append(time.perf_counter() - start)
    return times


def start_hub(tmp: Path, image: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    (tmp / "page.html").write_text("<!doctype html><p>bench</p>")
    config = tmp / "roomhub.toml"
    config.write_text(CONFIG.format(image=image, three=THREE))
    port = free_port()
    log = tmp / "hub.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = hub_argv(config, port, tmp / "data")
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"hub exited:\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                return proc, f"ws://127.0.0.1:{port}", log
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"hub did not start:\n{log.read_text()}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--teardown-runs", type=int, default=5)
    parser.add_argument("--image", default=IMAGE)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="roomhub-bench-") as tmpdir:
        proc, base, log = start_hub(Path(tmpdir), args.image)
        try:
            async with aiodocker.Docker() as docker:
                await hub_cold_start(base, docker, 2)  # warm-up: caches, first connections
                await docker_run_floor(args.image, 2)
                hub = await hub_cold_start(base, docker, args.runs)
                cli = await docker_run_floor(args.image, args.runs)
                api = await api_floor(docker, args.image, args.runs)
                teardown = await teardown_three(base, docker, args.teardown_runs)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        torn = [line for line in log.read_text().splitlines() if "/three:" in line and "torn down" in line]

    results = {
        "hub_cold_start": summary(hub),
        "docker_run_floor": summary(cli),
        "engine_api_floor": summary(api),
        "teardown_3_containers": summary(teardown),
    }
    floor = results["docker_run_floor"]["median_ms"]
    print(f"image {args.image}; {args.runs} cold starts, {args.teardown_runs} teardowns")
    print(f"{'measure':<28}{'median ms':>11}{'p95 ms':>10}{'min ms':>10}{'vs docker run':>15}")
    for name, row in results.items():
        ratio = f"{row['median_ms'] / floor:.2f}x" if name != "teardown_3_containers" else "-"
        figures = f"{row['median_ms']:>11.1f}{row['p95_ms']:>10.1f}{row['min_ms']:>10.1f}"
        print(f"{name:<28}{figures}{ratio:>15}")
    if torn:
        print("hub log, last teardown:", torn[-1].split("]")[-1].strip())
    results["ratio_hub_vs_docker_run"] = results["hub_cold_start"]["median_ms"] / floor
    print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main())
