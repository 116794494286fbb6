"""pgwidgets' names and calling conventions on roomhub's objects, through the real socket
with a scripted browser: ``Application``, ``Session``, ``session.get_widgets()``,
``await w.on(...)`` with extra handler arguments, keyword arguments to methods, getters
answered from state without ``await``, ``logger=``, ``max_sessions=``, ``await app.run()``."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from widgets_helpers import Browser, serve_app

import roomhub.widgets
import roomhub.widgets.sync
from hubtest import eventually, free_port
from roomhub.widgets import Application, Session


def test_pgwidgets_names_are_roomhubs_objects() -> None:
    assert issubclass(Application, roomhub.widgets.App)
    assert Session is roomhub.widgets.WidgetSession
    assert roomhub.widgets.sync.Application is roomhub.widgets.sync.App
    app = Application(max_sessions=4, logger=logging.getLogger("pgwidgets"))
    assert app.options == {"max_sessions": 4} and app.logger.name == "pgwidgets"


async def test_conventions_of_the_async_api(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    seen: list[Any] = []
    app = Application(logger=logging.getLogger("myapp"))

    @app.on_connect
    async def setup(session: Session) -> None:
        W = session.get_widgets()
        combo = await W.ComboBox(editable=False)
        for text in ("a", "b", "c"):
            await combo.append_text(text)
        await combo.set_index(1)
        label = await W.Label("Hi")
        await label.set_font(size=14)  # a keyword, the parameter before it skipped
        with pytest.raises(TypeError, match="colour"):
            await label.set_font(colour="red")
        assert label.get_text() == "Hi" and combo.get_index() == 1  # no await: from state
        btn = await W.Button("Go")

        async def clicked(tag: str, *, twice: bool) -> None:
            seen.append((tag, twice, combo.get_index()))

        def with_widget(widget: Any, tag: str) -> None:
            seen.append((widget.cls, tag))

        await btn.on("activated", clicked, "extra", twice=True)
        await btn.add_callback("activated", with_widget, "w")
        await btn.on("activated", lambda: 1 / 0)  # its failure goes to the app's logger
        session.data.update(combo=combo, btn=btn)

    async with serve_app(app, tmp_path) as h:
        b = await Browser.open(h.ws)
        await b.wait_for(lambda m: len(b.of("listen")) >= 2)
        session = next(iter(h.hub.face("widgets").registry.rooms.values()))  # type: ignore[attr-defined]
        combo, btn = session.data["combo"], session.data["btn"]
        font = b.of("call", method="set_font")
        assert [c["args"] for c in font] == [[None, 14]]
        # The ComboBox listens to what reports its state, from its creation (as pgwidgets).
        assert b.of("listen", wid=combo.wid, action="activated")
        await b.callback(combo.wid, "activated", 2, "c")
        await b.callback(btn.wid, "activated")
        await eventually(lambda: len(seen) == 2, what="the handlers")
        assert seen == [("extra", True, 2), ("Button", "w")]
        await eventually(lambda: any(r.name == "myapp" and r.levelname == "ERROR" for r in caplog.records),
                         what="the failing handler logged to the app's logger")
        await b.close()


async def test_await_run_serves_in_the_running_loop(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    port = free_port()
    monkeypatch.setenv("ROOMHUB_WIDGETS_PORT", str(port))
    app = Application()
    task = asyncio.create_task(app.run(data_dir=str(tmp_path)))
    try:
        async with httpx.AsyncClient() as client:

            async def up() -> bool:
                try:
                    return (await client.get(f"http://127.0.0.1:{port}/widgets/")).status_code == 200
                except httpx.HTTPError:
                    return False

            await eventually(up, within=30, what="the app on $ROOMHUB_WIDGETS_PORT")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_a_bad_port_in_the_environment_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROOMHUB_WIDGETS_PORT", "ninety")
    with pytest.raises(ValueError, match="ROOMHUB_WIDGETS_PORT='ninety'"):
        roomhub.widgets.sync.App().start()


async def test_every_class_takes_all_its_options(tmp_path: Path) -> None:
    from roomhub.widgets.renderer import widget_defs

    defs = widget_defs()
    assert len(defs) == 52
    app = roomhub.widgets.App()

    @app.on_connect
    async def setup(session: Session) -> None:
        for cls, defn in defs.items():
            args = [f"{cls}:{name}" for name in defn["args"]]
            options = {name: f"{cls}.{name}" for name in defn["options"]}
            await getattr(session.get_widgets(), cls)(*args, **options)

    async with serve_app(app, tmp_path) as h:
        b = await Browser.open(h.ws)
        await b.wait_for(lambda m: len(b.of("create")) == 52)
        for create in b.of("create"):
            defn = defs[create["class"]]
            args = [f"{create['class']}:{name}" for name in defn["args"]]
            options = {name: f"{create['class']}.{name}" for name in defn["options"]}
            assert create["args"] == args + ([options] if options else []), create["class"]
        assert not b.of("call"), "every keyword was an option: no setter calls"
        await b.close()


def test_pgwidgets_options_without_meaning_here_are_named() -> None:
    from roomhub.config import ConfigError

    with pytest.raises(ConfigError, match=r"widgets\.ws_port"):
        Application(ws_port=9500).make_server()


async def test_off_removes_a_handler_given_extra_arguments(tmp_path: Path) -> None:
    app = roomhub.widgets.App()

    @app.on_connect
    async def setup(session: Session) -> None:
        btn = await session.widgets.Button("Go")
        handler = print
        btn.on("activated", handler, "extra")
        btn.off("activated", handler)
        session.data["listening"] = (btn.wid, "activated") in session.handlers

    async with serve_app(app, tmp_path) as h:
        b = await Browser.open(h.ws)
        session = await eventually(lambda: next(iter(h.hub.face("widgets").registry.rooms.values()), None))
        await eventually(lambda: "listening" in session.data, what="the app")
        assert session.data["listening"] is False
        await b.wait_for(lambda m: b.of("unlisten"))
        await b.close()
