"""The sync wrapper (roomhub.widgets.sync) with a scripted browser over a real socket.

The hub runs in the sync app's own thread; the test's loop only runs the
scripted browser, so every blocking sync call made by the test goes through
``asyncio.to_thread`` (the browser must keep answering meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from widgets_helpers import Browser, serve_app

import roomhub.widgets
from hubtest import SRC, free_port
from roomhub.widgets.sync import App, LoopThreadError, Session, Widget


class Record:
    """Values set by handler threads, awaited by the test."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self._cond = threading.Condition()

    def set(self, key: str, value: Any) -> None:
        with self._cond:
            self.values[key] = value
            self._cond.notify_all()

    def _wait(self, key: str, timeout: float) -> Any:
        with self._cond:
            if not self._cond.wait_for(lambda: key in self.values, timeout):
                raise TimeoutError(f"{key!r} was never recorded: {self.values}")
            return self.values[key]

    async def wait(self, key: str, timeout: float = 10) -> Any:
        return await asyncio.to_thread(self._wait, key, timeout)


def in_thread() -> dict[str, Any]:
    try:
        asyncio.get_running_loop()
        has_loop = True
    except RuntimeError:
        has_loop = False
    return {"name": threading.current_thread().name, "has_loop": has_loop}


def button_app(record: Record, **options: Any) -> App:
    app = App(**options)

    @app.on_connect
    def setup(session: Session) -> None:
        record.set("setup_thread", in_thread())
        W = session.widgets
        top = W.TopLevel(title="Hello")
        label = W.Label("Not clicked")
        btn = W.Button("Click")
        box = W.VBox()
        box.add_widget(label, 0)
        box.add_widget(btn, 0)

        def clicked(widget: Widget) -> None:
            label.set_text("Clicked")
            record.set("click", (widget == btn, label.get_text(), in_thread()))

        btn.on("activated", lambda: record.set("lambda ran", True))
        btn.add_callback("activated", clicked)
        top.set_widget(box)
        top.show()
        record.set("session", session)

    @app.on_close
    def closed(session: Session) -> None:
        record.set("closed", session.id)

    return app


def hub_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("roomhub-widgets")}


@contextlib.asynccontextmanager
async def started(app: App, tmp_path: Path) -> AsyncIterator[str]:
    """Start ``app`` with ``app.start`` on a free port; yield its ``ws://`` base; stop it."""
    port = free_port()
    url = await asyncio.to_thread(
        app.start, "127.0.0.1", port, data_dir=str(tmp_path / "data"), log_level="debug"
    )
    assert url == f"http://127.0.0.1:{port}/widgets/" and app.port == port
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        await asyncio.to_thread(app.stop)


def show_sent(messages: list[dict[str, Any]]) -> bool:
    return any(m.get("method") == "show" for m in messages)


async def test_sync_handlers_build_the_ui_and_answer_callbacks(tmp_path: Path) -> None:
    record = Record()
    app = button_app(record)
    before = hub_threads()
    async with started(app, tmp_path) as ws:
        b = await Browser.open(ws)
        await b.wait_for(show_sent, timeout=10)
        creates = b.of("create")
        assert [c["class"] for c in creates] == ["TopLevel", "Label", "Button", "VBox"]
        assert [c["wid"] for c in creates] == [1, 2, 3, 4]
        assert creates[0]["args"] == [{"title": "Hello"}]
        assert creates[1]["args"] == ["Not clicked"]
        adds = b.of("call", method="add_widget")
        assert [(a["wid"], a["args"]) for a in adds] == [(4, [{"__wid__": 2}, 0]), (4, [{"__wid__": 3}, 0])]
        assert b.of("call", method="set_widget")[0]["args"] == [{"__wid__": 4}]
        assert len(b.of("listen", wid=3, action="activated")) == 1, "one listen for two handlers"
        setup_thread = await record.wait("setup_thread")
        assert setup_thread["name"].startswith("roomhub-widgets-handler")
        assert not setup_thread["has_loop"], "the handler does not run on the event loop"

        await b.callback(3, "activated")
        same_widget, text, click_thread = await record.wait("click")
        assert (await b.wait_for(lambda m: b.of("call", method="set_text")))[0]["args"] == ["Clicked"]
        assert same_widget, "add_callback passes the sync proxy of the widget first"
        assert text == "Clicked" and not b.of("call", method="get_text"), "getter from state"
        assert click_thread["name"].startswith("roomhub-widgets-handler")
        assert await record.wait("lambda ran") is True

        sessions = await asyncio.to_thread(lambda: app.sessions)
        assert [s.id for s in sessions] == [b.session_id]
        assert isinstance(sessions[0], Session) and sessions[0] == await record.wait("session")
        label = await asyncio.to_thread(sessions[0].widget, 2)
        assert label is not None and label.cls == "Label"
        # The test's own thread drives the UI too (not only handlers).
        await asyncio.to_thread(label.set_text, "from the script")
        await b.wait_for(lambda m: len(b.of("call", method="set_text")) == 2)
        assert await asyncio.to_thread(label.get_text) == "from the script"
        assert hub_threads() - before, "the hub and its handlers run in threads"
    assert await record.wait("closed") == b.session_id, "stop() ends the sessions (on_close)"
    assert await b.wait_closed() is not None
    assert hub_threads() == before, "stop() leaves no thread running"
    assert app.port is None
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", int(ws.rsplit(":", 1)[1])), 1):
        pass


async def test_round_trip_timeout_and_no_browser_raise_in_the_sync_world(tmp_path: Path) -> None:
    record = Record()
    app = App(call_timeout=0.5)

    @app.on_connect
    def setup(session: Session) -> None:
        table = session.widgets.TableView(columns=["a", "b"])
        record.set("selected", table.get_selected_cells())  # a round trip, answered
        started = time.monotonic()
        try:
            table.get_size()  # a round trip, never answered
        except roomhub.widgets.CallTimeout as exc:
            record.set("timeout", (time.monotonic() - started, str(exc)))
        table.set_rows([[1, 2]])  # the session is still usable
        with session.batch():
            table.set_tooltip("rows")
            table.set_enabled(False)
        record.set("after", True)

    async with started(app, tmp_path) as ws:
        b = await Browser.open(ws)
        b.values["get_selected_cells"] = [[0, 1]]
        b.silent_methods.add("get_size")
        assert await record.wait("selected") == [[0, 1]]
        elapsed, message = await record.wait("timeout")
        assert 0.4 <= elapsed < 3 and "get_size" in message
        assert await record.wait("after") is True
        await b.wait_for(lambda m: b.of("call", method="set_rows"))
        batch = (await b.wait_for(lambda m: b.of("batch")))[0]
        assert batch["calls"] == [
            {"wid": 1, "method": "set_tooltip", "args": ["rows"]},
            {"wid": 1, "method": "set_enabled", "args": [False]},
        ]

        await b.close()
        session = (await asyncio.to_thread(lambda: app.sessions))[0]
        deadline = time.monotonic() + 10
        while session.browsers and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        table = await asyncio.to_thread(session.widget, 1)
        assert table is not None
        with pytest.raises(roomhub.widgets.NoBrowser):
            await asyncio.to_thread(table.get_size)
        # A setter without a browser is recorded and returns at once.
        assert await asyncio.to_thread(table.set_tooltip, "offline") is None
        again = await Browser.open(ws, b.session_id, b.token)
        await again.wait_for(lambda m: again.of("reconstruct-end"))
        assert again.of("call", method="set_tooltip")[0]["args"] == ["offline"]
        await again.close()


async def test_sync_call_on_the_loop_thread_raises_instead_of_deadlocking(tmp_path: Path) -> None:
    record = Record()
    app = button_app(record)
    with pytest.raises(TypeError, match="async"):

        @app.on_connect
        async def not_plain(session: Any) -> None: ...

    async with started(app, tmp_path) as ws:
        b = await Browser.open(ws)
        await b.wait_for(show_sent, timeout=10)
        session = await record.wait("session")
        label = await asyncio.to_thread(session.widget, 2)

        async def on_the_loop() -> BaseException | None:
            try:
                label.set_text("never sent")
            except LoopThreadError as exc:
                return exc
            return None

        assert app.loop is not None
        future = asyncio.run_coroutine_threadsafe(on_the_loop(), app.loop)
        error = await asyncio.wrap_future(future)
        assert isinstance(error, LoopThreadError) and "deadlock" in str(error)
        assert not [m for m in b.of("call", method="set_text") if m["args"] == ["never sent"]]
        await b.close()


async def test_stop_releases_a_handler_blocked_on_a_round_trip(tmp_path: Path) -> None:
    record = Record()
    app = App(call_timeout=60)

    @app.on_connect
    def setup(session: Session) -> None:
        table = session.widgets.TableView()
        record.set("waiting", True)
        try:
            table.get_size()  # never answered
        except roomhub.widgets.WidgetsError as exc:
            record.set("released", type(exc).__name__)

    before = hub_threads()
    async with started(app, tmp_path) as ws:
        b = await Browser.open(ws)
        b.silent_methods.add("get_size")
        await b.wait_for(lambda m: b.of("call", method="get_size"))
        await record.wait("waiting")
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 15, "stop() did not wait for the 60 s call timeout"
    assert await record.wait("released", timeout=1) in ("NoBrowser", "SessionClosed")
    assert hub_threads() == before


async def test_a_hub_serves_a_sync_app_as_its_configured_app(tmp_path: Path) -> None:
    record = Record()
    app = button_app(record)
    before = hub_threads()
    async with serve_app(app, tmp_path) as h:  # a hub in the test's loop, not app.start()
        b = await Browser.open(h.ws)
        await b.wait_for(show_sent, timeout=10)
        await b.callback(3, "activated")
        await b.wait_for(lambda m: b.of("call", method="set_text"))
        assert (await record.wait("click"))[1] == "Clicked"
        await b.close()
    assert await record.wait("closed") == b.session_id
    deadline = time.monotonic() + 5  # the hub's stop ended the worker threads
    while hub_threads() != before and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert hub_threads() == before


async def test_a_handler_can_stop_the_app(tmp_path: Path) -> None:
    app = App()

    @app.on_connect
    def setup(session: Session) -> None:
        session.widgets.Button("Quit").on("activated", app.stop)

    before = hub_threads()
    async with started(app, tmp_path) as ws:
        b = await Browser.open(ws)
        await b.wait_for(lambda m: b.of("listen"))
        await b.callback(1, "activated")
        assert await b.wait_closed(10) is not None, "the hub stopped"
        thread = app._thread
        assert thread is not None
        await asyncio.to_thread(thread.join, 10)
        assert not thread.is_alive()
    assert hub_threads() == before


MYAPP = """\
import os
import sys

from roomhub.widgets.sync import App

app = App()


@app.on_connect
def setup(session):
    W = session.widgets
    top = W.TopLevel(title="Hello")
    label = W.Label("Not clicked")
    btn = W.Button("Click")
    box = W.VBox()
    box.add_widget(label, 0)
    box.add_widget(btn, 0)
    btn.on("activated", lambda: label.set_text("Clicked"))
    top.set_widget(box)
    top.show()


@app.on_close
def closed(session):
    print("closed", session.id, flush=True)


if __name__ == "__main__":
    app.run(port=int(sys.argv[1]), data_dir=os.environ["MYAPP_DATA"])
    print("exited cleanly", flush=True)
"""


async def test_standalone_script_runs_until_sigterm(tmp_path: Path) -> None:
    script = tmp_path / "myapp.py"
    script.write_text(textwrap.dedent(MYAPP))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(SRC), "MYAPP_DATA": str(tmp_path / "data")}
    with open(tmp_path / "myapp.log", "wb") as log:  # noqa: ASYNC230 (a fresh local file)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(script), str(port),
            stdout=asyncio.subprocess.PIPE, stderr=log, env=env, cwd=tmp_path,
        )  # fmt: skip
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)  # type: ignore[union-attr]
        assert line.decode().strip() == f"roomhub widgets: http://127.0.0.1:{port}/widgets/"
        b = await Browser.open(f"ws://127.0.0.1:{port}")
        await b.wait_for(show_sent, timeout=10)
        await b.callback(3, "activated")
        set_text = await b.wait_for(lambda m: b.of("call", method="set_text"))
        assert set_text[0]["args"] == ["Clicked"]

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        out = (await proc.stdout.read()).decode()  # type: ignore[union-attr]
        assert out.splitlines() == [f"closed {b.session_id}", "exited cleanly"]
        assert await b.wait_closed() is not None
        log_text = (tmp_path / "myapp.log").read_text()
        assert "Traceback" not in log_text, log_text
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
