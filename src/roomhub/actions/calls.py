"""One call of an action: its output stream and the task that runs its handler.

:func:`run_call` runs the handler (``async def`` directly, plain functions in
the thread pool, generators item by item), sends its return value as the
last data frame, turns an exception into an error frame and always ends
with ``close`` — unless the client went away, in which case nothing is sent.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from . import protocol as p
from .api import Handler

if TYPE_CHECKING:
    from ..core.metrics import HubMetrics

log = logging.getLogger("roomhub.actions")

Send = Callable[[str], object]


class StreamClosed(Exception):
    """Sending on a stream whose call has ended or was cancelled (as Igor raises)."""


class Stream:
    """The output of one call: ``send(data)``, ``send_error(message)``.

    Safe to use from the handler's thread for plain functions: frames are
    encoded in the caller's thread and queued through the event loop in
    order. After the call ended or was cancelled, ``send`` raises
    :class:`StreamClosed` so a looping handler stops.
    """

    __slots__ = (
        "_loop",
        "_loop_thread",
        "_send",
        "cancel_requested",
        "closed",
        "on_end",
        "started",
        "stream_id",
    )

    def __init__(self, stream_id: str, send: Send, loop: asyncio.AbstractEventLoop) -> None:
        self.stream_id = stream_id
        self._send = send
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self.closed = False
        self.cancel_requested = False
        self.started = False
        self.on_end: Callable[[Stream], object] | None = None

    @property
    def cancelled(self) -> bool:
        """True once the client cancelled the call or disconnected."""
        return self.closed

    def send(self, data: Any = None) -> None:
        """Send one data frame (``data`` must be JSON-serialisable, else ``TypeError``); Igor's
        ``send()`` with no argument sends ``null``."""
        self._emit(p.data(self.stream_id, data))

    def send_error(self, message: str) -> None:
        """Send an error frame (Igor's ``send_error``); the call goes on until it returns."""
        self._emit(p.error(self.stream_id, str(message)))

    def _emit(self, frame: str) -> None:
        if self.closed:
            raise StreamClosed(f"stream {self.stream_id!r} is closed")
        if threading.get_ident() == self._loop_thread:
            self._send(frame)
        else:
            self._loop.call_soon_threadsafe(self._deliver, frame)

    def _deliver(self, frame: str) -> None:
        if not self.closed:
            self._send(frame)


def _run_sync(handler: Handler, stream: Stream, data: Any, kwargs: dict[str, Any]) -> Any:
    result = handler.fn(stream, data, **kwargs)
    if handler.kind == "syncgen":
        for item in result:
            stream.send(item)
        return None
    return result


async def run_call(
    handler: Handler,
    stream: Stream,
    data: Any,
    kwargs: dict[str, Any],
    pool: Executor,
    debug: bool,
    metrics: HubMetrics | None = None,
) -> None:
    """Run ``handler`` for ``stream`` to the end; never raises (cancellation included).

    ``stream.on_end(stream)`` is called when the call is over (instead of a task done-callback,
    which would cost one more turn of the event loop per call). ``metrics``: where the call's
    outcome (``ok``, ``error``, ``refused``: data of the wrong shape, ``cancelled``) and
    duration are counted.
    """
    stream.started = True
    started = time.perf_counter()
    outcome = "cancelled"
    try:
        outcome = await _run(handler, stream, data, kwargs, pool, debug)
    finally:
        if metrics is not None:
            metrics.action_calls.labels(outcome).inc()
            metrics.action_duration.labels(outcome).observe(time.perf_counter() - started)
        if stream.on_end is not None:
            stream.on_end(stream)


async def _run(
    handler: Handler, stream: Stream, data: Any, kwargs: dict[str, Any], pool: Executor, debug: bool
) -> str:
    sid = stream.stream_id
    try:
        if handler.adapter is not None:
            try:
                data = handler.adapter.validate_python(data)
            except ValidationError as exc:
                stream._send(p.error(sid, _validation_message(handler.name, exc), p.BAD_DATA))
                stream._send(p.close(sid))
                return "refused"
        if handler.kind == "async":
            result = await handler.fn(stream, data, **kwargs)
        elif handler.kind == "asyncgen":
            async for item in handler.fn(stream, data, **kwargs):
                stream.send(item)
            result = None
        else:
            loop = asyncio.get_running_loop()
            call = functools.partial(_run_sync, handler, stream, data, kwargs)
            result = await loop.run_in_executor(pool, call)
        if result is not None:
            stream.send(result)
    except asyncio.CancelledError:
        if stream.cancel_requested and not stream.closed:
            stream._send(p.close(sid, cancelled=True))
        stream.closed = True
        return "cancelled"
    except StreamClosed:
        return "cancelled"
    except (Exception, SystemExit) as exc:
        # SystemExit too: Igor's "shutdown" recipe exits from a handler; here a handler cannot
        # stop the hub (stop it with a signal); its caller gets an error frame.
        if stream.closed:
            return "cancelled"
        log.warning(
            "action %r (stream %r) failed: %s: %s",
            handler.name,
            sid,
            type(exc).__name__,
            exc,
            exc_info=debug,
        )
        tb = traceback.format_exc() if debug else None
        message = str(exc) or type(exc).__name__
        if isinstance(exc, SystemExit):
            message = "SystemExit: a handler cannot stop the hub"
        stream._send(p.error(sid, message, p.HANDLER_FAILED, tb))
        outcome = "error"
    else:
        outcome = "ok"
    if not stream.closed:
        stream.closed = True
        stream._send(p.close(sid))
    return outcome


def _validation_message(action: str, exc: ValidationError) -> str:
    problems = "; ".join(
        f"{'.'.join(str(x) for x in e['loc']) or 'data'}: {e['msg']}" for e in exc.errors()[:5]
    )
    return f"data of the wrong shape for {action!r}: {problems}"
