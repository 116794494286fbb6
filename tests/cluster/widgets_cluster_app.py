"""The widgets app the cluster tests serve from hub processes: the widgets tests' button app, each
run of its on_connect also appending the session id to the file named by ``ROOMHUB_TEST_RUNS``."""

from __future__ import annotations

import os
from pathlib import Path

from roomhub.widgets import WidgetSession
from widgets.widgets_helpers import button_app

app = button_app()


@app.on_connect
def record(session: WidgetSession) -> None:
    with Path(os.environ["ROOMHUB_TEST_RUNS"]).open("a") as runs:
        runs.write(f"{session.id}\n")
