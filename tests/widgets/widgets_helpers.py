"""Widgets test helpers: a hub serving an App in the test's loop, and a scripted browser.

The scripted browser is a real ``websockets`` client speaking pgwidgets'
browser side: it answers ``init`` with its credentials, answers every
create/call/listen with a ``result`` (or stays silent when told to), and
records what it received.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import websockets

from hubtest import InProcessHub, serve_in_loop
from roomhub.widgets import App, WidgetSession


def widgets_config(directory: Path, **widgets: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in widgets.items())
    path = directory / "roomhub.toml"
    path.write_text(
        textwrap.dedent("""\
        [server]
        log_level = "debug"
        [widgets]
        """)
        + lines
        + "\n"
    )
    return path


def button_app(events: list[Any] | None = None) -> App:
    """A label and a button; a click sets the label's text (recorded in ``events``)."""
    app = App()

    @app.on_connect
    async def setup(session: WidgetSession) -> None:
        W = session.widgets
        top = await W.TopLevel(title="Hi")
        label = await W.Label("Not clicked")
        btn = await W.Button("Click")
        box = await W.VBox()
        await box.add_widget(label, 0)
        await box.add_widget(btn, 0)

        async def clicked() -> None:
            await label.set_text("Clicked")
            if events is not None:
                events.append(await label.get_text())

        btn.on("activated", clicked)
        await top.set_widget(box)
        await top.show()
        session.data["label"] = label

    return app


@contextlib.asynccontextmanager
async def serve_app(app: App, tmp: Path, **widgets: Any) -> AsyncIterator[InProcessHub]:
    """Serve ``app`` on a hub in this loop, with ``[widgets]`` options ``widgets``."""
    async with serve_in_loop(widgets_config(tmp / "cfg", **widgets), tmp / "data") as h:
        h.hub.face("widgets").use_app(app)  # type: ignore[attr-defined]
        yield h


class Browser:
    """A scripted browser on ``/widgets/ws``."""

    def __init__(self, ws: Any, answer: bool = True) -> None:
        self.ws = ws
        self.answer = answer
        self.silent_methods: set[str] = set()  # calls left unanswered
        self.values: dict[str, Any] = {}  # method -> value answered
        # Extra fields of the answer to a message (as pgwidgets-js adds next_wid to create answers).
        self.extra: Callable[[dict[str, Any]], dict[str, Any]] = lambda msg: {}
        self.messages: list[dict[str, Any]] = []
        self.frames: list[Any] = []
        self.session_id: str | None = None
        self.token: str | None = None
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.close_code: int | None = None
        self.close_reason = ""

    @classmethod
    async def open(
        cls, base: str, session_id: str | None = None, token: str | None = None, answer: bool = True
    ) -> Browser:
        ws = await websockets.connect(f"{base}/widgets/ws", max_size=None)
        browser = cls(ws, answer)
        init = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert init == {"type": "init", "id": 0}
        result: dict[str, Any] = {"type": "result", "id": 0}
        if session_id is not None:
            result.update(session_id=session_id, token=token)
        await ws.send(json.dumps(result))
        browser._task = asyncio.create_task(browser._read())
        return browser

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                data = json.loads(frame)
                self.frames.append(data)
                batch = data if isinstance(data, list) else [data]
                answers = []
                for msg in batch:
                    self.messages.append(msg)
                    if msg["type"] == "session-info":
                        self.session_id, self.token = msg["session_id"], msg["token"]
                        continue
                    if not self.answer or msg.get("method") in self.silent_methods:
                        continue
                    answer = {"type": "result", "id": msg["id"]}
                    if msg.get("method") in self.values:
                        answer["value"] = self.values[msg["method"]]
                    answer.update(self.extra(msg))
                    answers.append(answer)
                if answers:
                    await self.ws.send(
                        json.dumps(answers if isinstance(data, list) else answers[0])
                    )
                self._changed.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            if self.ws.close_code is not None:
                self.close_code, self.close_reason = self.ws.close_code, self.ws.close_reason or ""
            self._changed.set()

    async def wait_for(
        self,
        predicate: Callable[[list[dict[str, Any]]], Any],
        timeout: float = 5,
    ) -> Any:
        """Wait until ``predicate(messages)`` is truthy; return its value."""
        async with asyncio.timeout(timeout):
            while True:
                value = predicate(self.messages)
                if value:
                    return value
                self._changed.clear()
                await self._changed.wait()

    async def wait_closed(self, timeout: float = 5) -> int | None:
        assert self._task is not None
        await asyncio.wait_for(asyncio.shield(self._task), timeout)
        return self.close_code

    def of(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        return [
            m
            for m in self.messages
            if m["type"] == kind and all(m.get(k) == v for k, v in match.items())
        ]

    async def send(self, msg: Any) -> None:
        await self.ws.send(msg if isinstance(msg, str | bytes) else json.dumps(msg))

    async def callback(self, wid: int, action: str, *args: Any) -> None:
        await self.send({"type": "callback", "wid": wid, "action": action, "args": list(args)})

    async def close(self) -> None:
        await self.ws.close()
        if self._task:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 5)
