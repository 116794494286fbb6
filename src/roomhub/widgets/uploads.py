"""Chunked uploads from one browser connection (sans I/O).

pgwidgets' shape: the browser first sends the ``callback`` with metadata only
(``{"transfer_id": T, "files": [{"name", "size", "type", "encoding"}]}``),
then for each chunk a ``binary-chunk`` header followed by one binary frame;
headers and frames pair in FIFO order. When every chunk of every file is in,
``files[i]["data"]`` holds the bytes and the original action fires.

This module checks the announced and the received sizes against a limit,
counts progress, and finds transfers that made no progress for too long.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .protocol import ChunkHeader

MAX_TRANSFERS = 8  # concurrent uploads per connection
MAX_QUEUED_HEADERS = 64


class UploadError(Exception):
    """An upload refused or broken: too large, inconsistent, or unknown."""


@dataclass
class Upload:
    wid: int
    action: str
    transfer_id: int
    payload: dict[str, Any]
    total_bytes: int
    max_bytes: int
    chunks: dict[int, dict[int, bytes]] = field(default_factory=dict)  # file -> chunk -> data
    num_chunks: dict[int, int] = field(default_factory=dict)
    received_bytes: int = 0
    last_activity: float = field(default_factory=time.monotonic)

    @property
    def files(self) -> list[dict[str, Any]]:
        return self.payload["files"]

    @property
    def complete(self) -> bool:
        return len(self.num_chunks) == len(self.files) and all(
            len(self.chunks.get(i, ())) == n for i, n in self.num_chunks.items()
        )

    def add(self, header: ChunkHeader, data: bytes) -> None:
        if header.file_count != len(self.files) or header.file_index >= len(self.files):
            raise UploadError(f"transfer {self.transfer_id}: file index out of range")
        known = self.num_chunks.setdefault(header.file_index, header.num_chunks)
        if known != header.num_chunks:
            raise UploadError(f"transfer {self.transfer_id}: num_chunks changed")
        chunks = self.chunks.setdefault(header.file_index, {})
        if header.chunk_index in chunks:
            raise UploadError(f"transfer {self.transfer_id}: duplicate chunk {header.chunk_index}")
        self.received_bytes += len(data)
        if self.received_bytes > self.max_bytes:
            raise UploadError(f"transfer {self.transfer_id}: more than {self.max_bytes} bytes")
        chunks[header.chunk_index] = data
        self.last_activity = time.monotonic()

    def progress(self) -> dict[str, Any]:
        """The progress event: ``{transfer_id, transferred_bytes, total_bytes, complete}``."""
        return {
            "transfer_id": self.transfer_id,
            "transferred_bytes": self.received_bytes,
            "total_bytes": self.total_bytes,
            "complete": self.complete,
        }

    def result(self) -> dict[str, Any]:
        """The callback payload with ``files[i]["data"]`` filled in (bytes)."""
        files = []
        for i, meta in enumerate(self.files):
            parts = self.chunks.get(i, {})
            files.append({**meta, "data": b"".join(parts[k] for k in sorted(parts))})
        return {**self.payload, "files": files}


class UploadTracker:
    """The uploads of one connection: announced transfers and queued chunk headers."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.transfers: dict[int, Upload] = {}
        self._headers: deque[ChunkHeader] = deque()
        self._dropped: set[int] = set()

    @staticmethod
    def is_announcement(args: list[Any]) -> bool:
        """True when callback ``args`` carry an upload's metadata."""
        return (
            bool(args)
            and isinstance(args[0], dict)
            and "transfer_id" in args[0]
            and isinstance(args[0].get("files"), list)
        )

    def announce(self, wid: int, action: str, payload: dict[str, Any]) -> Upload:
        """Open a transfer; raises :class:`UploadError` when it is malformed or too large."""
        tid = payload.get("transfer_id")
        if not isinstance(tid, int) or tid in self.transfers:
            raise UploadError(f"bad or duplicate transfer_id {tid!r}")
        if len(self.transfers) >= MAX_TRANSFERS:
            self._dropped.add(tid)
            raise UploadError(f"more than {MAX_TRANSFERS} uploads at once")
        files = payload["files"]
        total = 0
        for f in files:
            size = f.get("size") if isinstance(f, dict) else None
            if not isinstance(size, int) or size < 0:
                self._dropped.add(tid)
                raise UploadError(f"transfer {tid}: every file needs an integer size")
            total += size
        if total > self.max_bytes:
            self._dropped.add(tid)
            raise UploadError(
                f"transfer {tid}: {total} bytes is over the {self.max_bytes} byte limit"
            )
        upload = Upload(wid, action, tid, payload, total, self.max_bytes)
        self.transfers[tid] = upload
        return upload

    def header(self, header: ChunkHeader) -> None:
        if len(self._headers) >= MAX_QUEUED_HEADERS:
            raise UploadError("too many chunk headers without their binary frames")
        self._headers.append(header)

    def frame(self, data: bytes) -> tuple[Upload | None, ChunkHeader]:
        """Pair a binary frame with the oldest header. Returns (upload or None if dropped, header).

        Raises :class:`UploadError` for a frame without header or a broken transfer
        (which is then dropped).
        """
        if not self._headers:
            raise UploadError("binary frame without a binary-chunk header")
        header = self._headers.popleft()
        upload = self.transfers.get(header.transfer_id)
        if upload is None:
            if header.transfer_id in self._dropped:
                return None, header
            raise UploadError(f"chunk for unknown transfer {header.transfer_id}")
        try:
            upload.add(header, data)
        except UploadError:
            self.drop(upload.transfer_id)
            raise
        if upload.complete:
            del self.transfers[upload.transfer_id]
        return upload, header

    def drop(self, transfer_id: int) -> Upload | None:
        self._dropped.add(transfer_id)
        return self.transfers.pop(transfer_id, None)

    def expired(self, timeout: float, now: float | None = None) -> list[Upload]:
        """Drop and return the transfers idle for more than ``timeout`` seconds."""
        now = time.monotonic() if now is None else now
        stale = [u for u in self.transfers.values() if now - u.last_activity > timeout]
        for u in stale:
            self.drop(u.transfer_id)
        return stale
