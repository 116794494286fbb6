"""Document stores: one interface (:class:`DocumentStore`), SQLite (default), PostgreSQL (shared by
the hubs of a cluster) and memory."""

from .base import DocumentStore, StoredDocument, integrate, load_into, merge, squash
from .memory import MemoryStore
from .postgres import PostgresStore
from .sqlite import SQLiteStore

__all__ = [
    "DocumentStore", "MemoryStore", "PostgresStore", "SQLiteStore", "StoredDocument", "integrate",
    "load_into", "merge", "squash",
]
