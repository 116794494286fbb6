"""Background processes: started with the hub, stopped with it, talking to clients.

In a cluster they run on the hub holding the lease ``actions`` only: started when it takes
the lease, stopped (:meth:`Processes.halt` at once, then waited for) when it loses it, started
again if it takes the lease again (see :class:`~roomhub.actions.ActionsFace`).

A process is registered with the API (:meth:`ActionsAPI.process` or
``add_process``): an ``async def`` (a task, cancelled at shutdown), a plain
function (its own daemon thread; ``stop`` is set at shutdown) or, as in
Igor, a ``threading.Thread`` instance (given ``process_id``, ``output``,
``scope``, ``sessions`` and ``stop`` attributes, started as a daemon).

Its :class:`ProcessOutput` sends Igor's process frames
``{"streamId": process_id, "action": ..., "data": ...}`` to every client or
to one client (by the id it took with ``introduce_self``, or its session id), from the
event loop or from any thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from . import protocol as p
from .api import ProcessSpec
from .calls import StreamClosed
from .session import ActionsState

log = logging.getLogger("roomhub.actions.processes")


class ProcessOutput:
    """Where a process writes. Each frame is encoded once, whatever the number of clients.

    After the process finished (:meth:`finish`) or the hub began to stop,
    sending raises :class:`~roomhub.actions.calls.StreamClosed`, which ends
    an Igor-style ``while True`` thread.
    """

    def __init__(self, process_id: str, state: ActionsState, loop: asyncio.AbstractEventLoop) -> None:
        self.process_id = process_id
        self._state = state
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self.closed = False

    def send(self, action: str | None = None, data: Any = None, client_id: str | None = None) -> bool:
        """Send ``data`` as ``action`` to every client, or to the one client ``client_id``: the
        connection that took that id with ``introduce_self``, else the one holding that session.

        Returns False if ``client_id`` is not connected (Igor raised instead).
        ``TypeError``/``ValueError`` if ``data`` is not JSON-serialisable.
        """
        return self._emit(p.process_message(self.process_id, action, data), client_id)

    def send_error(self, message: str, client_id: str | None = None) -> bool:
        """Send ``{"streamId": process_id, "error": message}`` to all or to one client."""
        return self._emit(p.error(self.process_id, str(message)), client_id)

    def finish(self) -> None:
        """Send ``close`` to every client; later sends raise ``StreamClosed``."""
        if not self.closed:
            self._emit(p.close(self.process_id), None)
            self.closed = True

    def _emit(self, frame: str, client_id: str | None) -> bool:
        if self.closed:
            raise StreamClosed(f"process {self.process_id!r} output is closed")
        if threading.get_ident() == self._loop_thread:
            return self._deliver(frame, client_id)
        self._loop.call_soon_threadsafe(self._deliver, frame, client_id)
        return client_id is None or self._state.client(str(client_id)) is not None

    def _deliver(self, frame: str, client_id: str | None) -> bool:
        if client_id is None:
            self._state.broadcast(frame)
            return True
        return self._state.send_to(str(client_id), frame)


def _quiet_on_close(run: Any) -> Any:
    """Let an Igor-style thread end silently when its output closes at shutdown."""

    def wrapper() -> None:
        try:
            run()
        except StreamClosed:
            log.debug("process thread %s ended: output closed", threading.current_thread().name)

    return wrapper


class Processes:
    """Runs the API's processes: for the hub's lifetime alone, while it holds the lease
    ``actions`` in a cluster (started again when it takes the lease again)."""

    def __init__(self, state: ActionsState) -> None:
        self.state = state
        self.outputs: dict[str, ProcessOutput] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.threads: dict[str, threading.Thread] = {}
        self.stop_event = threading.Event()
        self.running = False  # started and not stopped since

    def start(self) -> None:
        """Start every process (a new ``stop`` event, new outputs). Raises RuntimeError, before
        starting any, when a process registered as a Thread instance ran already (a Thread
        starts once: register its class to run it again)."""
        loop = asyncio.get_running_loop()
        for spec in self.state.api.processes.values():
            if spec.kind == "thread" and not isinstance(spec.target, type) and spec.target.ident is not None:
                raise RuntimeError(
                    f"process {spec.name!r}: this Thread was already started "
                    "(register its class to run it in more than one hub, or more than once)"
                )
        self.outputs, self.tasks, self.threads = {}, {}, {}
        self.stop_event = threading.Event()
        self.running = True
        for spec in self.state.api.processes.values():
            output = ProcessOutput(spec.name, self.state, loop)
            self.outputs[spec.name] = output
            if spec.kind == "thread":
                thread = spec.target() if isinstance(spec.target, type) else spec.target
                thread.process_id = spec.name
                thread.output = output
                thread.scope = self.state.scope
                thread.sessions = self.state.client_sessions
                thread.stop = self.stop_event
                thread.daemon = True
                thread.run = _quiet_on_close(thread.run)
                self.threads[spec.name] = thread
                thread.start()
            else:
                kwargs = self._kwargs(spec)
                if spec.kind == "async":
                    self.tasks[spec.name] = loop.create_task(
                        self._run_async(spec, output, kwargs), name=f"process:{spec.name}"
                    )
                else:
                    thread = threading.Thread(
                        target=self._run_sync,
                        args=(spec, output, kwargs, loop),
                        name=f"process:{spec.name}",
                        daemon=True,
                    )
                    self.threads[spec.name] = thread
                    thread.start()
            log.info("process %s started (%s)", spec.name, spec.kind)

    def _kwargs(self, spec: ProcessSpec) -> dict[str, Any]:
        available = {
            "scope": self.state.scope,
            "sessions": self.state.client_sessions,
            "process_id": spec.name,
            "stop": self.stop_event,
        }
        return {k: v for k, v in available.items() if k in spec.kwargs}

    async def _run_async(self, spec: ProcessSpec, output: ProcessOutput, kwargs: dict[str, Any]) -> None:
        try:
            await spec.target(output, **kwargs)
        except (asyncio.CancelledError, StreamClosed):
            return
        except Exception as exc:
            self._failed(spec, output, exc)
            return
        self._finished(output)

    def _run_sync(
        self,
        spec: ProcessSpec,
        output: ProcessOutput,
        kwargs: dict[str, Any],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        try:
            spec.target(output, **kwargs)
        except StreamClosed:
            return
        except Exception as exc:
            loop.call_soon_threadsafe(self._failed, spec, output, exc)
            return
        loop.call_soon_threadsafe(self._finished, output)

    def _failed(self, spec: ProcessSpec, output: ProcessOutput, exc: Exception) -> None:
        log.error(
            "process %s failed: %s: %s",
            spec.name,
            type(exc).__name__,
            exc,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
        if not output.closed and not self.stop_event.is_set():
            output.send_error(str(exc) or type(exc).__name__)
            output.finish()

    def _finished(self, output: ProcessOutput) -> None:
        if not output.closed and not self.stop_event.is_set():
            output.finish()

    def halt(self) -> list[asyncio.Task[None]]:
        """Set ``stop``, close every output (sends raise ``StreamClosed``), cancel the async
        processes, at once; the tasks cancelled. :meth:`stop` waits for them."""
        self.running = False
        self.stop_event.set()
        for output in self.outputs.values():
            output.closed = True
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        return tasks

    async def stop(self, grace: float = 5.0) -> None:
        """Cancel async processes, signal threads (``stop``), wait for them up to ``grace`` s."""
        tasks = self.halt()
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        for name, thread in self.threads.items():
            await asyncio.to_thread(thread.join, grace)
            if thread.is_alive():
                log.warning(
                    "process %s (thread) did not stop within %.0f s; left as a daemon",
                    name,
                    grace,
                )
