"""An internal error while handling a widgets frame reaches the browser as close code 1011.

The error is injected into the session's frame handler (a hub bug, no fault of the frame):
what is tested is that the close frame the hub sends is delivered, not lost as 1006.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import websockets
from widgets_helpers import serve_app

from hubtest import close_of, eventually
from roomhub.widgets import App
from roomhub.widgets.session import WidgetSession


async def test_an_internal_error_in_a_widgets_session_closes_with_1011(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = App()
    async with serve_app(app, tmp_path) as h:
        ws = await websockets.connect(f"{h.ws}/widgets/ws", open_timeout=10)
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "init"
        await ws.send(json.dumps({"type": "result", "id": 0}))
        await eventually(lambda: app.sessions, what="the session")

        def broken(self: WidgetSession, conn: Any, frame: str | bytes) -> None:
            raise RuntimeError("a bug in the hub")

        monkeypatch.setattr(WidgetSession, "handle", broken)
        await ws.send(json.dumps({"type": "result", "id": 1}))
        assert await close_of(ws) == (1011, "internal error")
