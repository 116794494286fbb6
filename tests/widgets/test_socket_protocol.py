"""The widgets socket with a scripted browser (websockets client) on a real hub."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import websockets
from widgets_helpers import Browser, button_app, serve_app

from hubtest import eventually, serve_in_loop
from roomhub.widgets import App, CallTimeout, NoBrowser, WidgetSession


async def test_handshake_and_message_shapes(tmp_path: Path) -> None:
    async with serve_app(button_app(), tmp_path) as h:
        b = await Browser.open(h.ws)
        await b.wait_for(lambda m: any(x.get("method") == "show" for x in m))
        info = b.of("session-info")[0]
        assert set(info) == {"type", "session_id", "token"} and len(info["token"]) >= 24
        creates = b.of("create")
        assert [c["class"] for c in creates] == ["TopLevel", "Label", "Button", "VBox"]
        assert creates[0]["args"] == [{"title": "Hi"}] and creates[1]["args"] == ["Not clicked"]
        assert [c["wid"] for c in creates] == [1, 2, 3, 4]
        add = b.of("call", method="add_widget")
        assert add[0]["wid"] == 4 and add[0]["args"] == [{"__wid__": 2}, 0]
        assert b.of("listen")[0] == {
            "type": "listen",
            "id": b.of("listen")[0]["id"],
            "wid": 3,
            "action": "activated",
        }
        ids = [m["id"] for m in b.messages if "id" in m]
        assert ids == sorted(ids) and len(set(ids)) == len(ids), "one increasing id counter"
        await b.close()


async def test_callback_runs_handler_and_getter_answers_from_state(tmp_path: Path) -> None:
    events: list[Any] = []
    async with serve_app(button_app(events), tmp_path) as h:
        b = await Browser.open(h.ws)
        await b.wait_for(lambda m: b.of("listen"))
        await b.callback(3, "activated")
        await b.wait_for(lambda m: b.of("call", method="set_text"))
        assert b.of("call", method="set_text")[0]["args"] == ["Clicked"]
        async with asyncio.timeout(5):
            while not events:
                await asyncio.sleep(0.01)
        assert events == ["Clicked"]
        assert not b.of("call", method="get_text"), "the label's text is known: no round trip"
        await b.close()


async def test_round_trip_times_out_instead_of_hanging(tmp_path: Path) -> None:
    outcome: list[Any] = []
    app = App()

    @app.on_connect
    async def setup(session: WidgetSession) -> None:
        table = await session.widgets.TableView(columns=["a"])
        started = time.monotonic()
        try:
            await table.get_selected_cells()
        except CallTimeout as exc:
            outcome.append((time.monotonic() - started, str(exc)))
        await table.set_rows([[1]])  # the session is still usable
        outcome.append("after")

    async with serve_app(app, tmp_path, call_timeout=0.5) as h:
        b = await Browser.open(h.ws)
        b.silent_methods.add("get_selected_cells")
        await b.wait_for(lambda m: b.of("call", method="set_rows"), timeout=10)
        elapsed, message = outcome[0]
        assert 0.4 <= elapsed < 3 and "get_selected_cells" in message
        assert outcome[1] == "after"
        await b.close()


async def test_waiting_call_fails_when_the_browser_drops(tmp_path: Path) -> None:
    outcome: list[Any] = []
    app = App()

    @app.on_connect
    async def setup(session: WidgetSession) -> None:
        table = await session.widgets.TableView()
        try:
            await table.get_selected_cells()
        except NoBrowser as exc:
            outcome.append(exc)

    async with serve_app(app, tmp_path, call_timeout=30) as h:
        b = await Browser.open(h.ws)
        b.silent_methods.add("get_selected_cells")
        await b.wait_for(lambda m: b.of("call", method="get_selected_cells"))
        started = time.monotonic()
        await b.close()
        async with asyncio.timeout(5):
            while not outcome:
                await asyncio.sleep(0.01)
        assert isinstance(outcome[0], NoBrowser) and time.monotonic() - started < 5


async def test_batch_sends_one_message(tmp_path: Path) -> None:
    app = App()

    @app.on_connect
    async def setup(session: WidgetSession) -> None:
        label = await session.widgets.Label("a")
        bar = await session.widgets.ProgressBar()
        async with session.batch():
            await label.set_text("b")
            await bar.set_value(0.5)
            await label.set_tooltip("tip")
        assert await label.get_text() == "b"

    async with serve_app(app, tmp_path) as h:
        b = await Browser.open(h.ws)
        batch = (await b.wait_for(lambda m: b.of("batch")))[0]
        assert batch["calls"] == [
            {"wid": 1, "method": "set_text", "args": ["b"]},
            {"wid": 2, "method": "set_value", "args": [0.5]},
            {"wid": 1, "method": "set_tooltip", "args": ["tip"]},
        ]
        assert not b.of("call"), "nothing sent outside the batch"
        await b.close()


async def test_reconnect_replays_the_tree_in_order(tmp_path: Path) -> None:
    runs: list[str] = []
    app = button_app()
    app.on_connect(lambda session: runs.append(session.id))
    async with serve_app(app, tmp_path) as h:
        a = await Browser.open(h.ws)
        await a.wait_for(lambda m: b_show(m))
        await a.callback(3, "activated")
        await a.wait_for(lambda m: a.of("call", method="set_text"))
        await a.close()

        b = await Browser.open(h.ws, a.session_id, a.token)
        await b.wait_for(lambda m: b.of("reconstruct-end"))
        kinds = [m["type"] for m in b.messages]
        assert kinds[0] == "session-info" and b.messages[0]["session_id"] == a.session_id
        assert kinds[1] == "reconstruct-start" and b.messages[1]["next_wid"] == 5
        assert kinds[-1] == "reconstruct-end"
        created: set[int] = set()
        for m in b.messages[2:-1]:
            if m["type"] == "create":
                created.add(m["wid"])
            else:  # every call and listen targets and references created widgets only
                assert m["wid"] in created
                refs = [x["__wid__"] for x in m.get("args", []) if isinstance(x, dict)]
                assert set(refs) <= created
        texts = [m["args"] for m in b.of("call", method="set_text")]
        assert texts == [["Clicked"]], "only the latest text is replayed"
        assert b.of("listen", wid=3, action="activated")
        assert [m["method"] for m in b.messages if m.get("method") in ("show", "hide")] == ["show"]
        assert runs == [a.session_id], "on_connect ran once for the session"
        await b.close()


def b_show(messages: list[dict[str, Any]]) -> bool:
    return any(m.get("method") == "show" for m in messages)


async def test_wrong_token_is_refused_with_4001(tmp_path: Path) -> None:
    async with serve_app(button_app(), tmp_path) as h:
        a = await Browser.open(h.ws)
        await a.wait_for(b_show)
        b = await Browser.open(h.ws, a.session_id, "wrong-token")
        assert await b.wait_closed() == 4001
        assert b.close_reason == "Invalid session credentials"
        assert not b.of("create"), "nothing of the session was shown"
        await a.close()


async def test_calls_without_browser_are_recorded_and_replayed(tmp_path: Path) -> None:
    async with serve_app(button_app(), tmp_path) as h:
        a = await Browser.open(h.ws)
        await a.wait_for(b_show)
        await a.close()
        session = h.hub.face("widgets").registry.get(a.session_id)
        async with asyncio.timeout(5):
            while session.browsers:
                await asyncio.sleep(0.01)
        label = session.data["label"]
        await label.set_text("changed offline")  # returns at once, no browser
        with pytest.raises(NoBrowser):
            await label.get_size()
        b = await Browser.open(h.ws, a.session_id, a.token)
        await b.wait_for(lambda m: b.of("reconstruct-end"))
        assert [m["args"] for m in b.of("call", method="set_text")] == [["changed offline"]]
        await b.close()


async def test_max_sessions_frees_slots_after_abandoned_connections(tmp_path: Path) -> None:
    closed: list[str] = []
    app = button_app()
    app.on_close(lambda session: closed.append(session.id))
    async with serve_app(
        app, tmp_path, max_sessions=2, idle_timeout=0.6, handshake_timeout=0.5
    ) as h:
        registry = h.hub.face("widgets").registry
        # Connections abandoned during the handshake never take a slot.
        for _ in range(4):
            ws = await websockets.connect(f"{h.ws}/widgets/ws")
            await ws.recv()
            await ws.close()
        silent = await websockets.connect(f"{h.ws}/widgets/ws")  # never answers init
        await silent.recv()
        await asyncio.wait_for(silent.wait_closed(), 5)
        assert silent.close_code == 1008
        assert len(registry.rooms) == 0

        first, second = await Browser.open(h.ws), await Browser.open(h.ws)
        await first.wait_for(b_show)
        await second.wait_for(b_show)
        third = await Browser.open(h.ws)
        assert await third.wait_closed() == 1013 and "session limit" in third.close_reason
        await first.close()  # abandoned: the session lives until reaped
        second.ws.transport.abort()  # dropped without a closing handshake
        async with asyncio.timeout(10):
            while len(closed) < 2:
                await asyncio.sleep(0.05)
        assert sorted(closed) == sorted([first.session_id, second.session_id])
        assert len(registry.rooms) == 0
        fourth = await Browser.open(h.ws)
        await fourth.wait_for(b_show)
        assert len(registry.rooms) == 1
        await fourth.close()


async def test_sessions_left_by_their_browsers_do_not_lock_out_new_visitors(tmp_path: Path) -> None:
    closed: list[str] = []
    app = button_app()
    app.on_close(lambda session: closed.append(session.id))
    async with serve_app(app, tmp_path, max_sessions=3, idle_timeout=300) as h:
        registry = h.hub.face("widgets").registry
        gone = []
        for _ in range(10):  # visitors who come, see the page and leave
            visitor = await Browser.open(h.ws)
            await visitor.wait_for(b_show)
            await visitor.close()
            gone.append(visitor)
        # At most max_sessions are kept; the oldest left first and were ended first.
        assert len(registry.rooms) <= 3
        assert closed == [v.session_id for v in gone[: len(closed)]] and len(closed) >= 7
        # An ended session leaves no idle timer behind (one per session kept).
        await eventually(lambda: len(
            [t for t in asyncio.all_tasks() if "_teardown_later" in repr(t.get_coro())]
        ) <= 3, what="the grace timers of ended sessions to go")
        new = await Browser.open(h.ws)
        await new.wait_for(b_show)
        assert new.close_code is None
        # The latest visitor's session was kept: it resumes with a replay.
        back = await Browser.open(h.ws, gone[-1].session_id, gone[-1].token)
        await back.wait_for(lambda m: back.of("reconstruct-end"))
        assert back.session_id == gone[-1].session_id
        # An evicted session's token no longer works: its visitor gets a fresh session.
        first = await Browser.open(h.ws, gone[0].session_id, gone[0].token)
        await first.wait_for(b_show)
        assert first.session_id != gone[0].session_id and not first.of("reconstruct-end")
        # Three live sessions: a fourth visitor is refused, as before.
        fourth = await Browser.open(h.ws)
        assert await fourth.wait_closed() == 1013 and "session limit" in fourth.close_reason
        for b in (new, back, first):
            assert b.close_code is None
            await b.close()


async def test_session_reattach_before_reaping_keeps_it(tmp_path: Path) -> None:
    async with serve_app(button_app(), tmp_path, idle_timeout=0.5) as h:
        a = await Browser.open(h.ws)
        await a.wait_for(b_show)
        await a.close()
        await asyncio.sleep(0.2)
        b = await Browser.open(h.ws, a.session_id, a.token)
        await b.wait_for(lambda m: b.of("reconstruct-end"))
        await asyncio.sleep(0.6)  # past the idle timeout, but a browser is attached
        assert h.hub.face("widgets").registry.get(a.session_id) is not None
        await b.close()


async def test_bad_input_never_sticks_the_session(tmp_path: Path) -> None:
    events: list[Any] = []
    async with serve_app(button_app(events), tmp_path) as h:
        b = await Browser.open(h.ws)
        await b.wait_for(lambda m: b.of("listen"))
        for bad in (
            "not json",
            '{"type": "nope"}',
            "[1, 2]",
            '{"type": "result", "id": 99999}',
            '{"type": "callback", "wid": 777, "action": "activated", "args": []}',
            '{"type": "callback", "wid": 3, "action": 5}',
            '{"type": "error", "error": "x"}',
        ):
            await b.send(bad)
        await b.callback(3, "activated")  # still served
        await b.wait_for(lambda m: b.of("call", method="set_text"))
        assert b.close_code is None
        await b.send(b"\x00\x01")  # a binary frame without its header
        assert await b.wait_closed() == 1003
        c = await Browser.open(h.ws, b.session_id, b.token)  # the session itself is fine
        await c.wait_for(lambda m: c.of("reconstruct-end"))
        await c.close()


async def test_deeply_nested_json_is_bad_input_and_the_session_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[Any] = []
    deep = "[" * 1000 + "]" * 1000
    async with serve_app(button_app(events), tmp_path) as h:
        b = await Browser.open(h.ws)
        await b.wait_for(lambda m: b.of("listen"))
        for frame in (
            deep,
            "[" * 2000 + "]" * 2000,
            '{"type": "callback", "wid": 3, "action": "activated", "args": [' + deep + "]}",
        ):
            await b.send(frame)
        await b.callback(3, "activated")  # still served
        await b.wait_for(lambda m: b.of("call", method="set_text"))
        assert b.close_code is None
        assert caplog.text.count("nested deeper than 64 levels") == 3
        # The answer to init is refused like any other that is not JSON (1008).
        ws = await websockets.connect(f"{h.ws}/widgets/ws")
        await ws.recv()
        await ws.send('{"type": "result", "id": 0, "token": ' + deep + "}")
        await asyncio.wait_for(ws.wait_closed(), 10)
        assert ws.close_code == 1008 and "not JSON" in ws.close_reason
    assert "Traceback" not in caplog.text and "RecursionError" not in caplog.text


async def test_two_browsers_are_kept_in_step(tmp_path: Path) -> None:
    app = App()

    @app.on_connect
    async def setup(session: WidgetSession) -> None:
        box = await session.widgets.CheckBox("Agree")
        box.on("activated", lambda state: None)

    async with serve_app(app, tmp_path) as h:
        a = await Browser.open(h.ws)
        await a.wait_for(lambda m: a.of("listen"))
        b = await Browser.open(h.ws, a.session_id, a.token)
        await b.wait_for(lambda m: b.of("reconstruct-end"))
        await a.callback(1, "activated", True)
        sync = (await b.wait_for(lambda m: b.of("call", method="set_state")))[0]
        assert sync["args"] == [True] and sync["silent"] is True
        assert not a.of("call", method="set_state"), "not echoed to the browser that changed it"
        session = h.hub.face("widgets").registry.get(a.session_id)
        assert await session.widget(1).get_state() is True
        await a.close()
        await b.close()


async def test_answers_to_the_sessions_calls_are_not_held_to_the_receive_rate(tmp_path: Path) -> None:
    # The browser answers every call; those answers are what the session asked for (bounded by
    # max_inflight_calls), so a receive rate of 50 messages/s must not hold 600 calls to 12 s.
    done = asyncio.Event()
    calls = 600

    app = App()

    @app.on_connect
    async def setup(session: WidgetSession) -> None:
        label = await session.widgets.Label("0")
        for i in range(calls):
            await label.set_text(str(i))
        done.set()

    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "roomhub.toml").write_text(
        "[server.limits]\nreceive_rate = 50.0\nreceive_burst = 50\nreceive_throttled_close = 0\n[widgets]\n"
    )
    async with serve_in_loop(cfg / "roomhub.toml", tmp_path / "data") as h:
        h.hub.face("widgets").use_app(app)  # type: ignore[attr-defined]
        b = await Browser.open(h.ws)
        started = time.monotonic()
        await asyncio.wait_for(done.wait(), 30)
        assert time.monotonic() - started < 5, "the browser's answers were held to receive_rate"
        # A call is done once sent (flow control bounds those in flight): the browser may still
        # be reading the last ones.
        await eventually(lambda: len(b.of("call", method="set_text")) == calls)
        await b.close()
