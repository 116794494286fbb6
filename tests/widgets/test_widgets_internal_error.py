"""An internal error while handling a widgets frame reaches the browser as close code 1011."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import websockets
from widgets_helpers import serve_app

from hubtest import close_of, eventually
from roomhub.widgets import App


async def test_an_internal_error_in_a_widgets_session_closes_with_1011(tmp_path: Path) -> None:
    app = App()
    async with serve_app(app, tmp_path) as h:
        ws = await websockets.connect(f"{h.ws}/widgets/ws", open_timeout=10)
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "init"
        await ws.send(json.dumps({"type": "result", "id": 0}))
        await eventually(lambda: app.sessions, what="the session")
        # Nested deeper than the JSON decoders go: their RecursionError is not an error the
        # session expects from input, so the connection is closed as an internal error.
        await ws.send("[" * 5000 + "]" * 5000)
        assert await close_of(ws) == (1011, "internal error")
