"""Widget ids shared with pgwidgets-js, which numbers widgets of its own: the parts its
constructors make (reported as ``next_wid`` in create answers), the widgets its factory
methods return (``Menu.add_name``...) and the ones it returns in results (``__class__``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from widgets_helpers import Browser, serve_app

from hubtest import eventually
from roomhub.widgets import App, Widget, WidgetSession


async def test_create_answers_next_wid_moves_our_ids_past_the_browsers(tmp_path: Path) -> None:
    made: list[Widget] = []
    app = App()

    @app.on_connect
    async def setup(session: WidgetSession) -> None:
        top = await session.widgets.TopLevel(title="Parts")
        await top.get_size(wait=True)  # a round trip: the create's answer is in
        made.extend([top, await session.widgets.Label("after")])

    async with serve_app(app, tmp_path) as h:
        b = await Browser.open(h.ws)
        # The TopLevel's constructor made two widgets of its own, numbered by the browser.
        b.extra = lambda msg: {"next_wid": msg["wid"] + 3} if msg["type"] == "create" else {}
        await eventually(lambda: len(made) == 2, what="the label")
        top, label = made
        assert label.wid >= top.wid + 3, "the label must not take an id the browser gave out"
        await b.wait_for(lambda m: b.of("create", **{"class": "Label"}))
        assert b.of("create", **{"class": "Label"})[0]["wid"] == label.wid
        await b.close()


def menu_app(clicked: list[str], made: dict[str, Any]) -> App:
    app = App()

    @app.on_connect
    async def setup(session: WidgetSession) -> None:
        W = session.widgets
        top = await W.TopLevel(title="Menus")
        box = await W.VBox()
        menubar = await W.MenuBar()
        file_menu = await menubar.add_name("File")
        quit_item = await file_menu.add_name("Quit")
        windows = await W.Menu()
        tile = await windows.add_name("Tile", True)
        await menubar.add_menu(windows, "Windows")
        labels = [await W.Label(f"label {i}") for i in range(4)]
        await box.add_widget(menubar, 0)
        for label in labels:
            await box.add_widget(label, 0)
        quit_item.on("activated", lambda: clicked.append("quit"))
        tile.on("activated", lambda checked: clicked.append(f"tile {checked}"))
        await top.set_widget(box)
        await top.show()
        made.update(file_menu=file_menu, quit=quit_item, tile=tile, labels=labels)

    return app


async def test_factory_methods_return_widgets_with_ids_of_their_own(tmp_path: Path) -> None:
    clicked: list[str] = []
    made: dict[str, Any] = {}
    async with serve_app(menu_app(clicked, made), tmp_path) as h:
        b = await Browser.open(h.ws)
        await b.wait_for(lambda m: b.of("call", method="show"))
        file_menu, quit_item, tile = made["file_menu"], made["quit"], made["tile"]
        assert (file_menu.cls, quit_item.cls, tile.cls) == ("Menu", "MenuAction", "MenuAction")
        ids = [w.wid for w in (file_menu, quit_item, tile, *made["labels"])]
        assert len(set(ids)) == len(ids)

        # What the browser's factory method does, in two calls under ids of ours.
        creates = {c["wid"]: c for c in b.of("create")}
        assert creates[quit_item.wid]["class"] == "MenuAction"
        assert creates[quit_item.wid]["args"] == [{"name": "Quit", "checkable": False}]
        assert creates[tile.wid]["args"] == [{"name": "Tile", "checkable": True}]
        assert {"wid": file_menu.wid, "method": "add_widget", "args": [{"__wid__": quit_item.wid}]}.items() \
            <= next(c for c in b.of("call", method="add_widget") if c["wid"] == file_menu.wid).items()
        menubar_calls = b.of("call", method="add_menu")
        assert menubar_calls[0]["args"] == [{"__wid__": file_menu.wid}, "File"]

        # A click on a menu item reaches its handler.
        await b.callback(quit_item.wid, "activated")
        await b.callback(tile.wid, "activated", True)
        await eventually(lambda: clicked == ["quit", "tile True"], what="the menu handlers")
        await b.close()

        # A reload replays the same ids: the menu item still answers.
        b2 = await Browser.open(h.ws, b.session_id, b.token)
        await b2.wait_for(lambda m: b2.of("reconstruct-end"))
        assert any(c["wid"] == quit_item.wid and c["class"] == "MenuAction" for c in b2.of("create"))
        assert b2.of("listen", wid=quit_item.wid, action="activated")
        await b2.callback(quit_item.wid, "activated")
        await eventually(lambda: clicked[-1] == "quit" and len(clicked) == 3, what="the replayed menu")
        await b2.close()


async def test_widgets_the_browser_returns_are_wrapped_and_their_ids_skipped(tmp_path: Path) -> None:
    made: dict[str, Any] = {}
    app = App()

    @app.on_connect
    async def setup(session: WidgetSession) -> None:
        W = session.widgets
        mdi = await W.MDIWidget()
        content = await W.Label("inside")
        made["sub"] = await mdi.add_widget(content, {"title": "A window"}, wait=True)
        made["after"] = await W.Label("after")
        made["unknown"] = await made["after"].get_text(wait=True)

    async with serve_app(app, tmp_path) as h:
        b = await Browser.open(h.ws)
        # The browser made an MDISubWindow around the content, numbered by itself.
        b.values["add_widget"] = {"__wid__": 3, "__class__": "MDISubWindow"}
        # A class pgwidgets-js does not have is no widget.
        b.values["get_text"] = {"__wid__": 99, "__class__": "NoSuchClass"}
        await eventually(lambda: "unknown" in made, what="the label after the window")
        sub, after = made["sub"], made["after"]
        assert isinstance(sub, Widget) and (sub.wid, sub.cls) == (3, "MDISubWindow")
        assert after.wid != sub.wid
        assert made["unknown"] is None and after.session.widget(99) is None
        await asyncio.wait_for(b.close(), 5)
