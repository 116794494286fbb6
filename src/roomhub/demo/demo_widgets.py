"""The demo's widgets app: a small form, a table and a progress bar driven from Python.

Served by the demo hub at ``/widgets/`` (``[widgets] app`` in ``roomhub.toml``),
or alone with ``python -m roomhub.demo.demo_widgets``.
"""

from __future__ import annotations

import asyncio

from roomhub.widgets import App, WidgetSession

app = App()

PEOPLE = [["Ada Lovelace", "Mathematics", 36], ["Alan Turing", "Computing", 41]]


@app.on_connect
async def setup(session: WidgetSession) -> None:
    W = session.widgets
    top = await W.TopLevel(title="Team directory")
    root = await W.VBox()
    await root.set_spacing(14)

    form = await W.Frame(title="Add a person")
    grid = await W.GridBox(columns=2)
    await grid.set_column_spacing(12)
    name = await W.TextEntry("")
    field = await W.ComboBox()
    for item in ("Mathematics", "Computing", "Physics", "Biology"):
        await field.append_text(item)
    age = await W.SpinBox(min=18, max=99, value=30)
    for row, (text, widget) in enumerate((("Name", name), ("Field", field), ("Age", age))):
        await grid.add_widget(await W.Label(text), row, 0)
        await grid.add_widget(widget, row, 1)
    await form.set_widget(grid)

    buttons = await W.HBox()
    add = await W.Button("Add person")
    run = await W.Button("Run a job")
    status = await W.Label("Fill in the form and press “Add person”.")
    await status.set_expanding(True, False)
    await buttons.add_widget(status, 1)
    await buttons.add_widget(run, 0)
    await buttons.add_widget(add, 0)

    table = await W.TableView(columns=["Name", "Field", "Age"], sortable=True)
    await table.set_rows(PEOPLE)
    progress = await W.ProgressBar()

    for widget in (form, buttons, table, progress):
        await root.add_widget(widget, 0)
    await top.set_widget(root)
    await top.show()

    async def add_person() -> None:
        who = (await name.get_text()).strip()
        if not who:
            await status.set_text("A name is needed.")
            return
        await table.append_row([who, await field.get_text() or "—", await age.get_value()])
        await name.set_text("")
        await status.set_text(f"Added {who}.")

    async def run_job() -> None:
        await run.set_enabled(False)
        for step in range(1, 21):
            await progress.set_value(step / 20)
            await status.set_text(f"Working… step {step} of 20")
            await asyncio.sleep(0.1)
        await status.set_text("Job done.")
        await run.set_enabled(True)

    add.on("activated", add_person)
    name.on("activated", lambda text: add_person())
    field.on("activated", lambda index, text: None)  # keeps the field's state known in Python
    age.on("activated", lambda value: None)
    jobs: set[asyncio.Task[None]] = set()

    def start_job() -> None:  # the job runs beside the handlers, which stay responsive
        task = asyncio.create_task(run_job())
        jobs.add(task)
        task.add_done_callback(jobs.discard)

    run.on("activated", start_job)


if __name__ == "__main__":
    app.run()
