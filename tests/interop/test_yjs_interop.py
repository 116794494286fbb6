"""The y-websocket npm client (Node) and pycrdt's provider editing one document through the hub."""

from __future__ import annotations

import asyncio

from pycrdt import Array, Map, Text
from tests.documents.ycl import y_client

from hubtest import eventually

from .node import node_client


def pycrdt_view(doc) -> dict:
    return {
        "text": str(doc.get("text", type=Text)),
        "m": doc.get("m", type=Map).to_py(),
        "arr": doc.get("arr", type=Array).to_py(),
    }


async def converged(clients, py_doc, within: float = 15.0) -> dict:
    """Wait until every Node client and the pycrdt doc show the same state; return it."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        views = [await c.dump() for c in clients] + [pycrdt_view(py_doc)]
        if all(v == views[0] for v in views):
            return views[0]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"did not converge: {views}")
        await asyncio.sleep(0.05)


async def test_node_and_pycrdt_clients_converge(docs_config, in_process_hub):
    async with in_process_hub(docs_config()) as h:
        url = f"{h.ws}/yjs"
        async with (
            node_client(url, "shared") as a,
            node_client(url, "shared") as b,
            y_client(h.ws, "shared") as py,
        ):
            # Concurrent edits from all three, without waiting for each other.
            await a.send(op="map", key="m", path=["inner", "deeper"], set={"x": 1, "s": "a"})
            await a.send(op="text", insert="hello ")
            await b.send(op="text", insert="world ")
            await b.send(op="push", values=[1, "two", {"three": 3}])
            await b.send(op="map", key="m", path=["other"], set={"note": {"$text": "nested text"}})
            with py.doc.transaction():
                py.doc.get("text", type=Text).insert(0, "python ")
                py.doc.get("arr", type=Array).append(4)
                py.doc.get("m", type=Map)["py"] = Map({"flag": True})
            state = await converged([a, b], py.doc)
            assert sorted(state["text"].split()) == ["hello", "python", "world"]
            assert state["m"]["inner"]["deeper"] == {"x": 1, "s": "a"}
            assert state["m"]["other"]["note"] == "nested text"
            assert state["m"]["py"] == {"flag": True}
            assert len(state["arr"]) == 4
            assert all(v in state["arr"] for v in (1, "two", {"three": 3}, 4))

            # Many interleaved concurrent text edits still converge.
            for i in range(20):
                await a.send(op="text", index=0, insert=f"a{i};")
                await b.send(op="text", index=0, insert=f"b{i};")
                py.doc.get("text", type=Text).insert(0, f"p{i};")
            state = await converged([a, b], py.doc)
            for who in "abp":
                assert all(f"{who}{i};" in state["text"] for i in range(20))

        # A late Node joiner gets everything from the hub (the others have left).
        async with node_client(url, "shared") as late:
            assert (await late.dump()) == state


async def test_awareness_between_node_clients(docs_config, in_process_hub):
    async with in_process_hub(docs_config()) as h:
        url = f"{h.ws}/yjs"
        async with node_client(url, "aw") as a:
            await a.send(op="awareness", state={"user": "alice", "cursor": 3})
            async with node_client(url, "aw") as b:
                await b.send(op="awareness", state={"user": "bob"})

                async def sees(client, user):
                    for _ in range(200):
                        if any(
                            s and s.get("user") == user for s in (await client.peers()).values()
                        ):
                            return
                        await asyncio.sleep(0.05)
                    raise AssertionError(f"{user} never seen")

                await sees(b, "alice")  # sent to the joiner by the hub
                await sees(a, "bob")
                room = h.hub.face("documents").get_room("aw")
                assert sorted(s["user"] for s in room.awareness_json().values()) == ["alice", "bob"]
            # b's process was killed (no goodbye from it): the hub removes its state and tells a.
            for _ in range(200):
                peers = await a.peers()
                if not any(s and s.get("user") == "bob" for s in peers.values()):
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"bob's awareness lingers: {peers}")
            await eventually(lambda: len(room.awareness_states) == 1)
