"""What an operator sees of a cluster (real hub processes, a real Redis): each hub logs the hubs
that join and leave, ``GET /api/rooms`` on any hub lists every hub's rooms (each naming its hub) and
forgets a hub's rooms when it leaves, and answers 503 with a reason while Redis does not answer."""

from __future__ import annotations

import signal

import httpx

from documents.ycl import y_client
from hubtest import eventually, free_port
from services import running, start_redis

from .test_documents_cluster import config


async def get(base: str, path: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.get(f"{base}{path}")


async def test_rooms_of_every_hub_and_hubs_joining_and_leaving_in_the_log(
    tmp_path, redis_url, postgres_dsn, hub_process
):
    conf = config(tmp_path / "conf", redis_url, postgres_dsn)
    a = hub_process(conf, "--data-dir", str(tmp_path / "a"))
    b = hub_process(conf, "--data-dir", str(tmp_path / "b"))
    a_id, b_id = [(await get(h.base, "/api/health")).json()["hub"] for h in (a, b)]
    await eventually(lambda: f"hub {b_id} joined (127.0.0.1:{b.port}, pid {b.proc.pid})" in a.log(),
                     what="hub a to log b's arrival")
    async with y_client(a.ws, "on-a"), y_client(b.ws, "on-b"):

        async def both_listed() -> list | None:
            rooms = (await get(a.base, "/api/rooms")).json()
            where = {(r["name"], r["hub"]) for r in rooms}
            return rooms if where == {("on-a", a_id), ("on-b", b_id)} else None

        rooms = await eventually(both_listed, what="both hubs' rooms on hub a")
        mine = next(r for r in rooms if r["hub"] == a_id)
        theirs = next(r for r in rooms if r["hub"] == b_id)
        assert mine["clients"] == theirs["clients"] == 1 and mine["namespace"] == theirs["namespace"] == "yjs"
        assert "size" in mine  # this hub's own rooms in full; another's in brief, as its heartbeat said
        assert set(theirs) == {"namespace", "name", "clients", "created_at", "hub"}
        cluster = (await get(a.base, "/api/cluster")).json()
        assert {h["id"]: h["room_list"] for h in cluster["hubs"]} == {
            a_id: [{"namespace": "yjs", "name": "on-a", "clients": 1}],
            b_id: [{"namespace": "yjs", "name": "on-b", "clients": 1}],
        }
    b.stop(signal.SIGTERM)
    await eventually(lambda: f"hub {b_id} left" in a.log(), what="hub a to log b's departure")
    assert all(r["hub"] == a_id for r in (await get(a.base, "/api/rooms")).json())


async def test_rooms_answer_503_while_redis_does_not(tmp_path, postgres_dsn, hub_process):
    port = free_port()
    with running("roomhub-redis-", lambda folder: start_redis(folder, port)) as server:
        hub = hub_process(config(tmp_path / "conf", server.url, postgres_dsn))
        assert (await get(hub.base, "/api/rooms")).status_code == 200
        server.stop()
        answer = await get(hub.base, "/api/rooms")
        assert answer.status_code == 503
        assert "Redis does not answer" in answer.json()["detail"]
        server.proc = start_redis(server.folder, port).proc

        async def listed() -> bool:
            return (await get(hub.base, "/api/rooms")).status_code == 200

        await eventually(listed, what="rooms listed again once Redis answers")
