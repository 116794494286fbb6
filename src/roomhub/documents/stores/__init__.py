"""Document stores: one interface (:class:`DocumentStore`), SQLite (default) and memory."""

from .base import DocumentStore, StoredDocument, merge
from .memory import MemoryStore
from .sqlite import SQLiteStore

__all__ = ["DocumentStore", "MemoryStore", "SQLiteStore", "StoredDocument", "merge"]
