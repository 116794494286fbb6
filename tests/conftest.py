"""Registers the shared fixtures (defined in hubtest.py and services.py, importable by name from every
test folder)."""

from hubtest import browser, hub_process, in_process_hub
from services import postgres_dsn, postgres_server, redis_server, redis_url

__all__ = [
    "browser", "hub_process", "in_process_hub", "postgres_dsn", "postgres_server", "redis_server",
    "redis_url",
]
