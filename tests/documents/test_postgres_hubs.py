"""The PostgreSQL store through real hubs: a restart reloads, two hubs writing one document through
one database lose nothing, a missing or unreachable database is refused at start with its key."""

from __future__ import annotations

import asyncio
import signal

import httpx
import pytest
from pycrdt import Array

from hubtest import eventually, free_port, serve_refused, write_config

from .ycl import y_client


def postgres_config(directory, dsn: str | None, extra: str = "", grace_period: float = 30):
    section = f'[documents.postgres]\ndsn = "{dsn}"\ncommit_window = 0.01\n' if dsn else ""
    body = f'[documents]\nstore = "postgres"\ngrace_period = {grace_period}\n{extra}\n{section}'
    return write_config(directory, body)


async def test_restart_reloads_from_postgres_with_the_dsn_from_the_environment(
    tmp_path, hub_process, postgres_dsn
):
    config = postgres_config(tmp_path / "conf", None)  # the dsn comes from ROOMHUB_POSTGRES_DSN
    env = {"ROOMHUB_POSTGRES_DSN": postgres_dsn}
    hub = hub_process(config, env=env)
    assert "PostgreSQL roomhub@127.0.0.1" in hub.log()  # the database named, without a password
    async with y_client(hub.ws, "notes") as c:
        arr = c.doc.get("arr", type=Array)
        for i in range(50):
            arr.append(i)
        await eventually(
            lambda: httpx.get(f"{hub.base}/api/documents/notes").json().get("content", {}).get("arr")
            == list(range(50))
        )
    hub.stop(signal.SIGTERM)
    assert "everything flushed to PostgreSQL" in hub.log()
    # another hub (own data directory: it shares nothing with the first but the database)
    hub2 = hub_process(config, "--data-dir", str(tmp_path / "data2"), env=env)
    async with y_client(hub2.ws, "notes") as fresh:
        assert fresh.doc.get("arr", type=Array).to_py() == list(range(50))


async def test_two_hubs_writing_one_document_through_postgres_lose_nothing(
    tmp_path, hub_process, postgres_dsn
):
    """Clients of two hubs write one document at once; both hubs compact it every 20 rows while
    they do. A third hub, started afterwards, loads every item of both."""
    config = postgres_config(tmp_path / "conf", postgres_dsn, extra="compact_after = 20")
    hubs = [hub_process(config, "--data-dir", str(tmp_path / f"data{i}")) for i in range(2)]
    per_client = 150

    async def write(hub, tag: str) -> None:
        async with y_client(hub.ws, "shared") as c:
            arr = c.doc.get("arr", type=Array)
            for i in range(per_client):
                arr.append(f"{tag}{i}")
                await asyncio.sleep(0.002)
            # acknowledged: the hub's REST view holds every item this client sent

            async def holds_all() -> bool:
                async with httpx.AsyncClient() as http:
                    view = (await http.get(f"{hub.base}/api/documents/shared")).json()
                return sum(str(v).startswith(tag) for v in view["content"]["arr"]) == per_client

            await eventually(holds_all, within=30)

    await asyncio.gather(write(hubs[0], "a"), write(hubs[1], "b"), write(hubs[0], "c"))
    for hub in hubs:
        hub.stop(signal.SIGTERM)  # flushes: every update the hub applied is in the database
    third = hub_process(config, "--data-dir", str(tmp_path / "data3"))
    async with y_client(third.ws, "shared") as reader:
        items = reader.doc.get("arr", type=Array).to_py()
    expected = [f"{tag}{i}" for tag in "abc" for i in range(per_client)]
    assert sorted(items) == sorted(expected)
    async with httpx.AsyncClient() as http:
        stored = (await http.get(f"{third.base}/api/documents")).json()
    assert [d["name"] for d in stored] == ["shared"]
    assert stored[0]["stored_updates"] < 3 * per_client  # compacted on the way


def test_a_postgres_store_without_dsn_is_a_config_error_naming_the_key(tmp_path):
    config = postgres_config(tmp_path / "conf", None)
    refused = serve_refused(config, tmp_path / "data")  # no ROOMHUB_POSTGRES_DSN in its environment
    assert refused.returncode != 0
    assert "documents.postgres.dsn" in refused.stdout and "ROOMHUB_POSTGRES_DSN" in refused.stdout


def test_an_unreachable_database_is_refused_at_start_without_its_password(tmp_path):
    dsn = f"postgresql://roomhub:s3cret@127.0.0.1:{free_port()}/nothing?connect_timeout=1"
    config = postgres_config(tmp_path / "conf", dsn, extra="")
    text = config.read_text().replace("commit_window = 0.01", "commit_window = 0.01\nconnect_timeout = 2")
    config.write_text(text)
    refused = serve_refused(config, tmp_path / "data")
    assert refused.returncode != 0
    assert "not reachable" in refused.stdout and "roomhub@127.0.0.1" in refused.stdout
    assert "s3cret" not in refused.stdout


def test_postgres_keys_are_validated_and_the_dsn_comes_from_the_environment(monkeypatch):
    from roomhub.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"documents\.postgres\.dsn: .*postgresql://"):
        parse_config({"documents": {"store": "postgres", "postgres": {"dsn": "mysql://h/db"}}})
    with pytest.raises(ConfigError, match=r"documents\.postgres\.pool_size"):
        parse_config({"documents": {"store": "postgres", "postgres": {"dsn": "postgresql://h/d",
                                                                      "pool_size": 0}}})
    monkeypatch.setenv("ROOMHUB_POSTGRES_DSN", "postgresql://hub@db/roomhub")
    config = parse_config({"documents": {"store": "postgres"}})
    assert config.documents.postgres.dsn == "postgresql://hub@db/roomhub"
    monkeypatch.setenv("ROOMHUB_POSTGRES_DSN", "not-a-uri")
    with pytest.raises(ConfigError, match=r"documents\.postgres\.dsn \(from ROOMHUB_POSTGRES_DSN\)"):
        parse_config({"documents": {"store": "postgres"}})
    # the sqlite store never needs one
    assert parse_config({"documents": {"store": "sqlite"}}).documents.postgres.dsn is None
