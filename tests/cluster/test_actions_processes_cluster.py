"""The actions face's processes in a cluster of three real hub processes sharing a real Redis:
they run on one hub, the holder of the lease ``actions`` (which serves every actions client),
and their output reaches clients connected to any hub; the holder killed with SIGKILL, another
hub takes the lease and starts them within a few seconds; a hub cut from Redis for the lease
time stops them (fencing) and starts them again once it holds the lease again."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from actions.actions_helpers import IgorClient
from hubtest import ROOT, SRC, HubProcess, eventually, start_hub_process, write_config
from services import running, start_redis

from .test_rooms_relay import LEASE, cluster_section, lease_owner, run_of

HERE = Path(__file__).resolve().parent


def config(directory: Path, redis_url: str) -> Path:
    return write_config(directory, f"""
[actions]
api = "actions_processes_api:API"
pythonpath = ["{HERE}"]
{cluster_section(redis_url)}
""")


def env(runs: Path) -> dict[str, str]:
    return {"ROOMHUB_TEST_RUNS": str(runs), "PYTHONPATH": f"{SRC}:{ROOT / 'tests'}"}


def runs_of(runs: Path) -> list[tuple[str, str, int]]:
    """``(start|stop, task|thread, pid)`` for each line the processes wrote."""
    if not runs.exists():
        return []
    return [(w, kind, int(pid)) for w, kind, pid in (line.split() for line in runs.read_text().splitlines())]


def started(runs: Path) -> list[int]:
    """The pids of the hubs that started the async process, in order."""
    return [pid for what, kind, pid in runs_of(runs) if what == "start" and kind == "task"]


async def hubs_running_processes(tmp_path: Path, redis_url: str, hub_process, names: str
                                 ) -> tuple[Path, list[HubProcess]]:
    """Hubs ``names`` (started in that order) and the file their processes write to, once the
    first hub started the async process."""
    runs = tmp_path / "runs.txt"
    conf = config(tmp_path / "conf", redis_url)
    hubs = [hub_process(conf, "--data-dir", str(tmp_path / n), env=env(runs)) for n in names]
    await eventually(lambda: started(runs) == [hubs[0].proc.pid], what="started on the first hub")
    return runs, hubs


async def beat_from(client: IgorClient, pid: int, within: float = 10) -> dict:
    """The next beat of the hub ``pid`` (beats of another hub before it skipped)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        msg = await client.next("beacon", max(0.01, deadline - loop.time()))
        if msg.get("data", {}).get("pid") == pid:
            return msg


async def test_one_hub_runs_the_processes_and_clients_of_every_hub_get_their_output(
    tmp_path, redis_url, hub_process
):
    # the first hub to start takes the lease and runs them; the others do not
    runs, (a_hub, b_hub, c_hub) = await hubs_running_processes(tmp_path, redis_url, hub_process, "abc")
    await eventually(lambda: len(runs_of(runs)) == 2, what="the two processes started")
    assert await lease_owner(redis_url, "actions") == await run_of(a_hub)
    b = await IgorClient.connect(b_hub.ws)  # relayed to hub a
    c = await IgorClient.connect(c_hub.ws)
    for client in (b, c):
        beat = await client.next("beacon")
        assert beat["action"] == "beat" and beat["data"]["pid"] == a_hub.proc.pid
    # their scope is the one every client's handlers see
    assert await c.value("beats") >= 1
    await asyncio.sleep(LEASE * 2)  # several heartbeats of the other hubs' claims
    assert sorted(runs_of(runs)) == [("start", "task", a_hub.proc.pid), ("start", "thread", a_hub.proc.pid)]
    assert "actions: this hub holds the lease 'actions': starting the processes" in a_hub.log()
    for hub in (b_hub, c_hub):
        assert "starting the processes" not in hub.log()
    for client in (b, c):
        await client.close()
    # no client left: the holder keeps the lease (and the processes) all the same
    await asyncio.sleep(LEASE * 2)
    assert await lease_owner(redis_url, "actions") == await run_of(a_hub)
    assert len(runs_of(runs)) == 2


async def test_a_killed_holder_s_processes_start_on_another_hub_within_a_few_seconds(
    tmp_path, redis_url, hub_process
):
    runs, hubs = await hubs_running_processes(tmp_path, redis_url, hub_process, "abc")
    a_hub, b_hub, c_hub = hubs
    b = await IgorClient.connect(b_hub.ws)
    await beat_from(b, a_hub.proc.pid)
    a_hub.stop(signal.SIGKILL)
    killed = asyncio.get_running_loop().time()
    await b.wait_closed(LEASE * 2)
    assert b.close_code == 1012
    await eventually(lambda: len(started(runs)) == 2, within=LEASE * 4, what="the processes started again")
    elapsed = asyncio.get_running_loop().time() - killed
    assert elapsed < LEASE * 3, elapsed  # the lease time and a heartbeat or two
    new = started(runs)[1]
    holder = next(h for h in hubs if h.proc.pid == new)
    assert holder in (b_hub, c_hub)
    assert await lease_owner(redis_url, "actions") == await run_of(holder)
    # clients reconnecting through either hub left get the new holder's output
    b2 = await IgorClient.connect(b_hub.ws)
    c2 = await IgorClient.connect(c_hub.ws)
    for client in (b2, c2):
        await beat_from(client, new)
    await asyncio.sleep(LEASE)
    assert started(runs) == [a_hub.proc.pid, new]  # one hub took over, once
    for client in (b2, c2):
        await client.close()


async def test_a_hub_cut_from_redis_for_the_lease_time_stops_its_processes_then_claims_again(tmp_path):
    """Its own Redis, paused: the holder cannot renew, and stops the processes before its lease
    could expire; once Redis answers again, it takes the lease again and starts them."""
    runs = tmp_path / "runs.txt"
    with running("roomhub-redis-fence-", start_redis) as server:
        hub: HubProcess = start_hub_process(config(tmp_path / "conf", server.url), tmp_path, env=env(runs))
        try:
            await eventually(lambda: len(runs_of(runs)) == 2, what="the two processes started")
            client = await IgorClient.connect(hub.ws)
            await client.next("beacon")
            server.proc.send_signal(signal.SIGSTOP)  # Redis hangs: no renewal answers
            try:
                paused = asyncio.get_running_loop().time()
                await eventually(lambda: len(runs_of(runs)) == 4, within=LEASE * 2,
                                 what="both processes stopped")
                assert asyncio.get_running_loop().time() - paused < LEASE  # before it could expire
                assert sorted(runs_of(runs)[2:]) == [("stop", "task", hub.proc.pid),
                                                     ("stop", "thread", hub.proc.pid)]
                await client.wait_closed(LEASE)
                assert client.close_code == 1012
            finally:
                server.proc.send_signal(signal.SIGCONT)
            assert "actions: this hub lost the lease 'actions': stopping the processes" in hub.log()
            # it goes on claiming: the lease expired meanwhile, it takes it again
            await eventually(lambda: len(started(runs)) == 2, within=LEASE * 4,
                             what="the processes started again")
            again = await IgorClient.connect(hub.ws)
            await again.next("beacon")
            await again.close()
        finally:
            hub.stop()


async def test_a_holder_whose_lease_is_taken_stops_its_processes_before_another_hub_starts_them(
    tmp_path, redis_url, hub_process
):
    import redis.asyncio as redis

    from .test_rooms_relay import PREFIX

    runs, (a_hub, b_hub) = await hubs_running_processes(tmp_path, redis_url, hub_process, "ab")
    # another owner takes the lease (as after an expiry hub a did not see): its next renewal is
    # refused; the stolen lease expires within the lease time, then a hub takes it again
    async with redis.Redis.from_url(redis_url) as client:
        await client.hset(f"{PREFIX}:lease:actions", "owner", "someone-else.000000")
    await eventually(lambda: ("stop", "task", a_hub.proc.pid) in runs_of(runs), within=LEASE,
                     what="hub a's processes stopped")
    assert ("stop", "thread", a_hub.proc.pid) in runs_of(runs)
    await eventually(lambda: len(started(runs)) == 2, within=LEASE * 4, what="the processes started again")
    # nothing started again before hub a's processes had both stopped
    assert [what for what, _, _ in runs_of(runs)][:5] == ["start", "start", "stop", "stop", "start"]
    holder = a_hub if started(runs)[1] == a_hub.proc.pid else b_hub
    assert await lease_owner(redis_url, "actions") == await run_of(holder)


async def test_a_stopped_holder_stops_its_processes_and_hands_the_lease_over_at_once(
    tmp_path, redis_url, hub_process
):
    runs, (a_hub, b_hub) = await hubs_running_processes(tmp_path, redis_url, hub_process, "ab")
    stopping = asyncio.get_running_loop().time()
    assert a_hub.stop(signal.SIGTERM) == 0
    # released at its stop: hub b need not wait for the lease to expire
    await eventually(lambda: started(runs) == [a_hub.proc.pid, b_hub.proc.pid], within=LEASE * 2,
                     what="the processes started on hub b")
    assert asyncio.get_running_loop().time() - stopping < LEASE
    # hub a's processes had stopped before hub b's started
    assert [what for what, _, _ in runs_of(runs)][:5] == ["start", "start", "stop", "stop", "start"]
