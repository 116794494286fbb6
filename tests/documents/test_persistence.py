"""Documents survive a clean restart and a SIGKILL of the hub (SQLite and PostgreSQL stores,
subprocess hub)."""

from __future__ import annotations

import asyncio
import signal

import httpx
import pytest
from pycrdt import Doc, Text

from hubtest import eventually

from .ycl import y_client


def store_section(request: pytest.FixtureRequest, store: str, commit_window: float = 0.05) -> str:
    """The ``[documents.<store>]`` section of a test's configuration (PostgreSQL: the test's database)."""
    dsn = f'dsn = "{request.getfixturevalue("postgres_dsn")}"\n' if store == "postgres" else ""
    return f"[documents.{store}]\n{dsn}commit_window = {commit_window}\n"


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
async def test_restart_keeps_the_document(docs_config, hub_process, request, store):
    # still in memory at shutdown: the stop must flush it
    config = docs_config(grace_period=30, store=store, extra=store_section(request, store))
    hub = hub_process(config)
    async with y_client(hub.ws, "notes") as c:
        text = c.doc.get("text", type=Text)
        for i in range(50):
            text.insert(len(text), f"line {i}\n")
        expected = str(text)
        # the hub has it (and nothing is on disk yet maybe): its REST view says so
        await eventually(
            lambda: (
                httpx.get(f"{hub.base}/api/documents/notes").json().get("content", {}).get("text")
                == expected
            )
        )
    hub.stop(signal.SIGTERM)  # uvicorn re-raises the signal: the exit status is -15
    assert "everything flushed" in hub.log()

    hub2 = hub_process(config)
    async with y_client(hub2.ws, "notes") as fresh:
        # loaded before the first sync answer: synced means the content is there already
        assert str(fresh.doc.get("text", type=Text)) == expected


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
async def test_sigkill_loses_at_most_the_commit_window_and_clients_restore_it(
    docs_config, hub_process, request, store
):
    config = docs_config(grace_period=30, store=store, extra=store_section(request, store))
    hub = hub_process(config)
    keeper = Doc()  # a client's document that outlives the crash
    async with y_client(hub.ws, "crash", keeper) as c:
        text = c.doc.get("text", type=Text)
        text += "committed;"
        await eventually(
            lambda: httpx.get(f"{hub.base}/api/documents").json()[0]["stored_updates"] > 0,
            what="the first update to be committed",
        )
        await asyncio.sleep(0.3)  # well past the 50 ms window
        text += "maybe-lost;"
        await asyncio.sleep(0.005)
        hub.stop(signal.SIGKILL)

    hub2 = hub_process(config)
    async with y_client(hub2.ws, "crash") as fresh:
        survived = str(fresh.doc.get("text", type=Text))
        assert survived.startswith("committed;")
        # The client that still holds the edits reconnects: Yjs sync restores whatever was lost.
        async with y_client(hub2.ws, "crash", keeper):
            await eventually(
                lambda: str(fresh.doc.get("text", type=Text)) == "committed;maybe-lost;"
            )
    hub2.stop()
    hub3 = hub_process(config)
    async with y_client(hub3.ws, "crash") as again:
        assert str(again.doc.get("text", type=Text)) == "committed;maybe-lost;"
