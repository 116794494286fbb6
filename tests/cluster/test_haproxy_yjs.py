"""Three hubs of a cluster behind haproxy (round-robin), driven by the y-websocket npm client under
Node: clients of one document land on different hubs and converge; every hub's ``/api/rooms`` lists
every hub's rooms; a hub killed with SIGKILL: its clients reconnect through haproxy to the others
and nothing the cluster acknowledged is lost."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest
from tests.interop.node import NodeClient, ensure_node_modules, node_client
from tests.interop.test_yjs_cluster import converged

from balancer import ClusterBehindBalancer
from hubtest import eventually


@pytest.fixture(scope="module", autouse=True)
def _node_modules() -> None:
    ensure_node_modules()


async def landed(cluster: ClusterBehindBalancer, room: str, before: dict[int, int]) -> int:
    """The hub whose count of local members of ``room`` grew past ``before`` (hub index -> count)."""
    async def grown() -> int | None:
        counts = await asyncio.to_thread(cluster.local_members, room)
        grew = [i for i, n in counts.items() if n > before.get(i, 0)]
        return grew[0] + 1 if grew else None  # +1: hub 0 is truthy too

    return await eventually(grown, what=f"a new member of {room} on some hub") - 1


async def test_node_clients_through_haproxy_land_on_every_hub_and_converge(cluster_behind_haproxy):
    cluster = cluster_behind_haproxy(3)
    url = f"{cluster.balancer.ws}/yjs"
    async with contextlib.AsyncExitStack() as stack:
        clients: list[NodeClient] = []
        for _ in range(3):
            clients.append(await stack.enter_async_context(node_client(url, "shared")))
        # round-robin: each client on a hub of its own
        await eventually(lambda: cluster.local_members("shared") == {0: 1, 1: 1, 2: 1},
                         what="one member on each hub")
        a, b, c = clients
        for i, client in enumerate((a, b, c)):
            await client.send(op="push", values=[f"first-{i}"])
        for n in range(20):
            for i, client in enumerate((a, b, c)):
                await client.send(op="text", index=0, insert=f"{i}.{n};")
        state = await converged([a, b, c])
        assert sorted(state["arr"]) == ["first-0", "first-1", "first-2"]
        assert all(f"{i}.{n};" in state["text"] for i in range(3) for n in range(20))
        # every hub's /api/rooms lists the room on all three hubs, each entry naming its hub
        for hub in cluster.hubs:
            async def all_listed(hub=hub) -> bool:
                async with httpx.AsyncClient() as http:
                    rooms = (await http.get(f"{hub.base}/api/rooms")).json()
                return sorted(r["hub"] for r in rooms if r["name"] == "shared") == sorted(cluster.ids)
            await eventually(all_listed, what=f"hub {hub.port} to list the room on every hub")
        async with httpx.AsyncClient() as http:
            seen = (await http.get(f"{cluster.balancer.base}/api/cluster")).json()
        assert {h["id"] for h in seen["hubs"]} == set(cluster.ids)
        assert all(h["room_list"] == [{"namespace": "yjs", "name": "shared", "clients": 1}]
                   for h in seen["hubs"]), seen["hubs"]


async def pusher(client: NodeClient, name: str, count: int, pause: float = 0.02) -> None:
    for i in range(count):
        await client.send(op="push", values=[f"{name}{i}"])
        await asyncio.sleep(pause)


async def test_a_hub_killed_behind_haproxy_its_clients_reconnect_and_nothing_acknowledged_is_lost(
    cluster_behind_haproxy
):
    """Four clients through haproxy (two on one hub), all appending; that hub is killed with
    SIGKILL together with one of its clients (what it had not sent is gone with it). The other
    client of the killed hub reconnects through haproxy to a live hub and goes on; every item
    another hub had received before the kill (acknowledged) is in the document, and a client
    connecting afresh gets it whole."""
    cluster = cluster_behind_haproxy(3)
    url = f"{cluster.balancer.ws}/yjs"
    clients: list[NodeClient] = []
    hubs: list[int] = []
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(4):
            before = await asyncio.to_thread(cluster.local_members, "notes")
            clients.append(await stack.enter_async_context(node_client(url, "notes")))
            hubs.append(await landed(cluster, "notes", before))
        victim = hubs[0]
        assert hubs.count(victim) == 2, hubs  # round-robin over 3 hubs: the 1st and 4th share one
        doomed, survivor = clients[0], clients[3]
        witness = next(c for c, h in zip(clients, hubs, strict=True) if h != victim)
        names = ["a", "b", "c", "d"]
        writers = [asyncio.create_task(pusher(c, n, 60)) for c, n in zip(clients, names, strict=True)]
        await asyncio.sleep(0.6)
        # acknowledged: what a client on another hub holds (replicated out of the doomed hub)
        acknowledged = set((await witness.dump())["arr"])
        assert any(item.startswith("a") for item in acknowledged)
        doomed.proc.kill()
        cluster.hubs[victim].proc.kill()
        writers[0].cancel()
        await asyncio.gather(*writers[1:])
        await survivor.wait("synced", within=20)  # reconnected through haproxy, synced again
        assert {"event": "status", "status": "disconnected"} in survivor.history
        assert victim not in await asyncio.to_thread(cluster.local_members, "notes")
        live = [c for c in clients if c is not doomed]
        state = await converged(live, within=30)
        items = set(state["arr"])
        assert acknowledged <= items, sorted(acknowledged - items)
        assert {f"{n}{i}" for n in "bcd" for i in range(60)} <= items
        # a fresh client through haproxy (on a live hub) gets the whole document
        async with node_client(url, "notes") as fresh:
            assert set((await converged([fresh, *live]))["arr"]) == items
