"""Bench app for roomhub's widgets face (run by widgets_bench.py): ``python ... PORT N``.

Widgets: Label (wid 1), Button "click" (2), Button "run" (3), Button "run-wait" (4).
"click" sets the label's text; "run" makes N set_text calls (pipelined under
flow control); "run-wait" makes N set_text calls each awaited as a round trip.
"""

from __future__ import annotations

import sys

from roomhub.widgets import App, WidgetSession

N = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
app = App(max_sessions=1000, max_inflight_calls=256)


@app.on_connect
async def setup(session: WidgetSession) -> None:
    W = session.widgets
    label = await W.Label("start")
    click, run, run_wait = (
        await W.Button("click"),
        await W.Button("run"),
        await W.Button("run-wait"),
    )

    async def clicked() -> None:
        await label.set_text("clicked")

    async def calls() -> None:
        for i in range(N):
            await label.set_text(str(i))

    async def calls_wait() -> None:
        for i in range(N):
            await label.set_text(str(i), wait=True)

    click.on("activated", clicked)
    run.on("activated", calls)
    run_wait.on("activated", calls_wait)


if __name__ == "__main__":
    app.run(port=int(sys.argv[1]), log_level="warning")
