"""Process-wide tuning of the hub's memory management, for steady latency and throughput.

- :func:`retain_large_buffers`: glibc's ``malloc`` serves blocks of 128 KiB
  and more with ``mmap`` and gives freed memory back to the system at once.
  A streamed request body reaches the hub in blocks of about 256 KiB (the
  event loop's read size), copied a few times on its way to a backend, so
  each block was mapped, faulted in page by page and unmapped again: that
  roughly halved the throughput of an upload through the backends proxy.
  Raising the mmap threshold and the trim threshold (``mallopt``, see
  ``man 3 mallopt``) keeps such blocks in the heap and reuses them.
- :func:`freeze_startup_objects`: what start-up built lives as long as the
  hub; moved out of the cyclic collector's sight (:func:`gc.freeze`), a full
  collection no longer walks it (one took tens of milliseconds, a stall for
  every request in flight). :func:`thaw_objects` undoes it at shutdown.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import sys

log = logging.getLogger("roomhub.tuning")

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MiB = 1024 * 1024


def retain_large_buffers(mmap_threshold: int = 4 * MiB, trim_threshold: int = 32 * MiB) -> bool:
    """Serve blocks under ``mmap_threshold`` bytes from the heap and keep up to ``trim_threshold``
    bytes of freed heap for reuse (glibc ``mallopt``). Returns False where it does not apply (not
    Linux, another C library); never raises."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))
    log.debug("malloc keeps blocks under %d bytes in the heap: %s", mmap_threshold, done)
    return done


def freeze_startup_objects() -> None:
    """Collect start-up's garbage, then exempt every remaining object from later collections."""
    gc.collect()
    gc.freeze()


def thaw_objects() -> None:
    """Undo :func:`freeze_startup_objects` (at shutdown: a process that builds another hub, such
    as a test session, can then collect this one)."""
    gc.unfreeze()
