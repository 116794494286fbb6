"""Document stores: one interface (:class:`DocumentStore`), SQLite (default) and memory."""

from .base import DocumentStore, StoredDocument, load_into, merge, squash
from .memory import MemoryStore
from .sqlite import SQLiteStore

__all__ = [
    "DocumentStore", "MemoryStore", "SQLiteStore", "StoredDocument", "load_into", "merge", "squash",
]
