"""The y-websocket npm client (Node) on two hubs of a cluster (real Redis, real PostgreSQL, real hub
processes): edits made on either hub converge, and awareness crosses between hubs, its removal too."""

from __future__ import annotations

import asyncio

from tests.cluster.test_documents_cluster import config

from .node import NodeClient, node_client


async def converged(clients: list[NodeClient], within: float = 15.0) -> dict:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        views = [await c.dump() for c in clients]
        if all(v == views[0] for v in views):
            return views[0]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"did not converge: {views}")
        await asyncio.sleep(0.05)


async def sees(client: NodeClient, user: str, present: bool = True) -> None:
    for _ in range(300):
        seen = any(s and s.get("user") == user for s in (await client.peers()).values())
        if seen == present:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{user} {'never seen' if present else 'lingers'}")


async def test_node_clients_on_two_hubs_converge_and_see_each_other(
    tmp_path, redis_url, postgres_dsn, hub_process
):
    conf = config(tmp_path / "conf", redis_url, postgres_dsn)
    a_hub, b_hub = (hub_process(conf, "--data-dir", str(tmp_path / n)) for n in ("a", "b"))
    async with node_client(f"{a_hub.ws}/yjs", "shared") as a:
        async with node_client(f"{b_hub.ws}/yjs", "shared") as b:
            await a.send(op="text", insert="hello ")
            await b.send(op="push", values=[1, "two"])
            await b.send(op="map", key="m", path=["inner"], set={"x": 1})
            for i in range(20):
                await a.send(op="text", index=0, insert=f"a{i};")
                await b.send(op="text", index=0, insert=f"b{i};")
            state = await converged([a, b])
            assert all(f"{who}{i};" in state["text"] for who in "ab" for i in range(20))
            assert "hello " in state["text"] and state["arr"] == [1, "two"]
            assert state["m"] == {"inner": {"x": 1}}

            await a.send(op="awareness", state={"user": "alice"})
            await b.send(op="awareness", state={"user": "bob"})
            await sees(b, "alice")
            await sees(a, "bob")
        # b's process was killed: its hub removes bob's state, and tells the other hub's members
        await sees(a, "bob", present=False)
