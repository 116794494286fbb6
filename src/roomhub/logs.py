"""The process's logging set-up, shared by ``roomhub serve`` and a widgets app run standalone."""

from __future__ import annotations

import logging


def setup_logging(level: str) -> None:
    """Log at ``level`` (``debug``, ``info``, ``warning``, ``error``) to stderr, one line per record."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    # Access logs of every static file drown the useful lines.
    logging.getLogger("uvicorn.access").setLevel(max(logging.WARNING, logging.getLogger().level))
