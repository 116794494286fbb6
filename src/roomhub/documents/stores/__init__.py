"""Document stores: one interface (:class:`DocumentStore`), SQLite (default) and memory."""

from .base import DocumentStore, StoredDocument, integrate, load_into, merge, squash
from .memory import MemoryStore
from .sqlite import SQLiteStore

__all__ = [
    "DocumentStore", "MemoryStore", "SQLiteStore", "StoredDocument", "integrate", "load_into", "merge",
    "squash",
]
