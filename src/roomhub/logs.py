"""The process's logging set-up, shared by ``roomhub serve`` and a widgets app run standalone.

Two formats (``server.log_format``, ``--log-format``): ``text``, one human line per record, and
``json``, one JSON object per line (python-json-logger) with ``time``, ``level``, ``logger``,
``message`` and, where they apply, ``face``, ``room`` and ``connection``. Those three come from
:data:`LOG_FACE`, :data:`LOG_ROOM` and :data:`LOG_CONNECTION`, context variables the socket loops
set (:func:`log_context`): asyncio copies them into the tasks a connection starts, so whatever
is logged while serving it carries them, in both formats (text shows them in brackets).
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager

LOG_FACE: contextvars.ContextVar[str | None] = contextvars.ContextVar("roomhub_face", default=None)
LOG_ROOM: contextvars.ContextVar[str | None] = contextvars.ContextVar("roomhub_room", default=None)
LOG_CONNECTION: contextvars.ContextVar[str | None] = contextvars.ContextVar("roomhub_connection",
                                                                           default=None)
_VARS = (("face", LOG_FACE), ("room", LOG_ROOM), ("connection", LOG_CONNECTION))


@contextmanager
def log_context(**values: str | None) -> Iterator[None]:
    """Set ``face``, ``room`` and/or ``connection`` for what is logged inside (and in the tasks
    started inside) the ``with`` block; a value of None clears it there."""
    tokens = [(var, var.set(values[name])) for name, var in _VARS if name in values]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class ContextFilter(logging.Filter):
    """Adds ``face``, ``room`` and ``connection`` to each record from the context variables (a
    value given with ``extra=`` wins), and ``context``: them as ``" [face room connection]"``."""

    def filter(self, record: logging.LogRecord) -> bool:
        shown = []
        for name, var in _VARS:
            value = getattr(record, name, None) or var.get()
            if value is not None:
                setattr(record, name, value)
                shown.append(f"{name}={value}")
        record.context = f" [{' '.join(shown)}]" if shown else ""
        return True


def setup_logging(level: str, log_format: str = "text") -> None:
    """Log at ``level`` (``debug``, ``info``, ``warning``, ``error``) to stderr, one line per
    record, as ``log_format`` says (``"text"`` or ``"json"``; anything else: ``ValueError``)."""
    handler = logging.StreamHandler()
    if log_format == "json":
        from pythonjsonlogger.core import RESERVED_ATTRS
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter(
            "{asctime}{levelname}{name}{message}", style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            reserved_attrs=[*RESERVED_ATTRS, "taskName", "context"],
        ))
    elif log_format == "text":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s%(context)s: %(message)s",
                                               datefmt="%H:%M:%S"))
    else:
        raise ValueError(f"log format {log_format!r}: expected 'text' or 'json'")
    handler.addFilter(ContextFilter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # Access logs of every static file drown the useful lines.
    logging.getLogger("uvicorn.access").setLevel(max(logging.WARNING, logging.getLogger().level))

