"""Bench app for pgwidgets-python 0.4.2's async API (run under Python >= 3.12): ``PORT N``.

Same widgets and handlers as widgets_app_roomhub.py (no "run-wait": every
pgwidgets call already waits for the browser's answer).
"""

import asyncio
import sys

from pgwidgets.async_ import Application

PORT = int(sys.argv[1])
N = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
app = Application(
    ws_port=PORT, http_server=False, max_sessions=None, concurrency_handling="per_session"
)


@app.on_connect
async def setup(session):
    W = session.get_widgets()
    label = await W.Label("start")
    click, run, run_wait = (
        await W.Button("click"),
        await W.Button("run"),
        await W.Button("run-wait"),
    )

    async def clicked(*args):
        await label.set_text("clicked")

    async def calls(*args):
        for i in range(N):
            await label.set_text(str(i))

    await click.on("activated", clicked)
    await run.on("activated", calls)
    await run_wait.on("activated", calls)


asyncio.run(app.run())
