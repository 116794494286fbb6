"""The tests' private Redis and PostgreSQL (tests/services.py) are real servers, isolated per test."""

from __future__ import annotations

import psycopg
import redis


def test_redis_answers_and_starts_empty(redis_url):
    with redis.Redis.from_url(redis_url) as client:
        assert client.dbsize() == 0
        client.set("k", "v")
        assert client.get("k") == b"v"
        assert client.config_get("save") == {"save": ""}


def test_postgres_gives_a_fresh_database(postgres_dsn):
    with psycopg.connect(postgres_dsn) as db:
        tables = db.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        assert tables == (0,)
        db.execute("CREATE TABLE t (x int)")
        db.execute("INSERT INTO t VALUES (1)")
        assert db.execute("SELECT x FROM t").fetchall() == [(1,)]
        (version,) = db.execute("SHOW server_version_num").fetchone()
        assert int(version) >= 130000  # DROP DATABASE ... WITH (FORCE)


def test_postgres_databases_do_not_share_tables(postgres_dsn):
    with psycopg.connect(postgres_dsn) as db:
        assert db.execute("SELECT to_regclass('public.t')").fetchone() == (None,)
