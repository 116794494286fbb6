"""The browser client's one WebSocket (web/socket.js, ReconnectingSocket) in a real Chromium.

The module is served by a real hub; its sockets reach a WebSocket server on loopback (the
websockets library, in a thread) that records every handshake and message, refuses handshakes
(HTTP 503) while it is "down", and closes its connections with the code a test picks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from e2e.browser_helpers import open_tabs
from hubtest import write_config

pytestmark = pytest.mark.e2e
pytest.importorskip("playwright.sync_api")

WITHIN = 30.0  # seconds: a loaded machine may be slow, a wrong socket never gets there


@dataclass
class Attempt:
    """One handshake the peer saw: when (monotonic seconds), its path, and, if accepted, the
    messages received on it."""

    at: float
    path: str
    accepted: bool
    messages: list[str] = field(default_factory=list)


class Peer:
    """The server end of the page's sockets."""

    def __init__(self) -> None:
        self.attempts: list[Attempt] = []
        self.attempt_of: dict[ServerConnection, Attempt] = {}
        self.open: list[ServerConnection] = []
        self.refuse = 0  # handshakes to refuse with 503 before accepting again
        self.greeting: str | None = None  # sent first on every accepted connection
        self.changed = threading.Condition()
        self.server: Server = serve(self.handle, "127.0.0.1", 0, process_request=self.handshake)
        self.url = f"ws://127.0.0.1:{self.server.socket.getsockname()[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        with self.changed:
            accepted = self.refuse == 0
            self.refuse = max(0, self.refuse - 1)
            self.attempts.append(attempt := Attempt(time.monotonic(), request.path, accepted))
            self.attempt_of[connection] = attempt
            self.changed.notify_all()
        return None if accepted else connection.respond(503, "down\n")

    def handle(self, connection: ServerConnection) -> None:
        with self.changed:
            attempt = self.attempt_of[connection]
            self.open.append(connection)
            self.changed.notify_all()
        try:
            if self.greeting is not None:
                connection.send(self.greeting)
            for message in connection:
                with self.changed:
                    attempt.messages.append(str(message))
                    self.changed.notify_all()
        except ConnectionClosed:
            pass  # closed with a code other than 1000/1001: what the tests ask for
        finally:
            with self.changed:
                self.open.remove(connection)
                self.changed.notify_all()

    def wait(self, check, what: str) -> None:
        """Wait until ``check()`` holds; AssertionError naming ``what`` after WITHIN seconds."""
        with self.changed:
            assert self.changed.wait_for(check, WITHIN), f"the peer never saw {what}: {self.attempts}"

    def close_all(self, code: int, reason: str) -> None:
        with self.changed:
            connections = list(self.open)
        for connection in connections:
            connection.close(code, reason)

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(WITHIN)


@pytest.fixture
def peer() -> Iterator[Peer]:
    peer = Peer()
    yield peer
    peer.stop()


@pytest.fixture
def tab(hub_process, browser, tmp_path: Path) -> Iterator[object]:
    """A Chromium tab on a real hub's origin, with ReconnectingSocket (from /static/socket.js) as
    ``window.RS``; JavaScript errors thrown in it fail the test."""
    hub = hub_process(write_config(tmp_path / "conf", "[documents]\n"))
    with open_tabs(browser) as (make, errors):
        page = make()
        page.set_default_timeout(WITHIN * 1000)  # type: ignore[attr-defined]
        page.goto(f"{hub.base}/api/health")  # type: ignore[attr-defined]
        page.evaluate(  # type: ignore[attr-defined]
            "async () => { window.RS = (await import('/static/socket.js')).ReconnectingSocket; }")
        yield page
        page.evaluate("() => (window.sockets || []).forEach((s) => s.close())")  # type: ignore[attr-defined]
    assert not errors, errors


def test_reconnects_with_capped_backoff_rebuilds_the_url_and_sends_the_queue_in_order(
    tab, peer: Peer
) -> None:
    peer.greeting = "hello"
    tab.evaluate("""(peer) => {
        let n = 0;
        // Frames wait for the peer's greeting, as the actions client's wait for its session.
        const s = new RS(() => `${peer}/one?attempt=${++n}`,
                         { minDelay: 200, maxDelay: 800, jitter: 0.5, flushOnOpen: false });
        window.sockets = [s];
        window.closes = [];
        s.addEventListener("close", (e) => closes.push(e.detail));
        s.addEventListener("message", (e) => e.data === "hello" && s.established());
        s.connect();
        window.one = s;
    }""", peer.url)
    peer.wait(lambda: len(peer.open) == 1, "the first connection")
    tab.wait_for_function("() => one.state === 'open'")

    peer.refuse = 4  # the next four handshakes fail: each wait doubles, up to maxDelay
    peer.close_all(1001, "restarting")
    tab.wait_for_function("() => one.state === 'reconnecting'")
    sent_now = tab.evaluate("() => ['m1', 'm2', 'm3', 'm4', 'm5'].map((m) => one.send(m))")
    assert sent_now == [False] * 5
    peer.wait(lambda: len(peer.attempts) == 6 and len(peer.attempts[5].messages) == 5, "the queue")
    assert tab.evaluate("() => one.send('m6')") is True
    peer.wait(lambda: len(peer.attempts[5].messages) == 6, "m6")

    assert [a.path for a in peer.attempts] == [f"/one?attempt={n}" for n in range(1, 7)]
    assert [a.accepted for a in peer.attempts] == [True, False, False, False, False, True]
    assert peer.attempts[5].messages == ["m1", "m2", "m3", "m4", "m5", "m6"]
    assert all(not a.messages for a in peer.attempts[1:5])

    # The greeted connection made the backoff start afresh for the next outage.
    peer.close_all(1001, "restarting again")
    peer.wait(lambda: len(peer.attempts) == 7, "the reconnect after the second outage")
    closes = tab.evaluate("() => closes")
    assert [c["code"] for c in closes] == [1001, 1006, 1006, 1006, 1006, 1001]
    assert all(c["retrying"] for c in closes)
    for close, base in zip(closes, [200, 400, 800, 800, 800, 200], strict=True):
        assert base * 0.5 <= close["retryIn"] <= base * 1.5, (close, base)
    for before, after, close in zip(peer.attempts[1:5], peer.attempts[2:6], closes[1:5], strict=True):
        assert after.at - before.at >= close["retryIn"] / 1000 - 0.05, "reconnected before its wait"


def test_sockets_a_restart_dropped_come_back_at_spread_times(tab, peer: Peer) -> None:
    tab.evaluate("""(peer) => {
        window.sockets = [];
        window.waits = [];
        for (let i = 0; i < 8; i++) {
            const s = new RS(`${peer}/many?tab=${i}`, { minDelay: 1000 });
            s.addEventListener("close", (e) => waits.push(e.detail.retryIn));
            s.connect();
            sockets.push(s);
        }
    }""", peer.url)
    peer.wait(lambda: len(peer.open) == 8, "eight connections")
    peer.close_all(1012, "service restart")
    tab.wait_for_function("() => waits.length === 8")
    waits = tab.evaluate("() => waits")
    assert all(800 <= w <= 1200 for w in waits), waits  # the default jitter: 1000 ms ± 20 %
    assert len(set(waits)) > 1, f"every socket would come back at the same instant: {waits}"
    peer.wait(lambda: len(peer.open) == 8, "the eight reconnects")


def test_a_close_the_retry_policy_refuses_stops_the_socket(tab, peer: Peer) -> None:
    tab.evaluate("""(peer) => {
        const s = new RS(`${peer}/policy`,
                         { minDelay: 100, retry: (close) => ![1008, 4001].includes(close.code) });
        window.sockets = [s];
        window.closes = [];
        s.addEventListener("close", (e) => closes.push(e.detail));
        s.connect();
        window.one = s;
    }""", peer.url)
    peer.wait(lambda: len(peer.open) == 1, "the connection")
    tab.wait_for_function("() => one.state === 'open'")
    peer.close_all(4001, "token refused")
    tab.wait_for_function("() => one.state === 'closed'")
    assert tab.evaluate("() => closes") == [
        {"code": 4001, "reason": "token refused", "wasClean": True, "retrying": False, "retryIn": 0}
    ]
    time.sleep(2.0)  # twenty times minDelay: a retry would have come
    assert len(peer.attempts) == 1
    # Only the page starts it again.
    tab.evaluate("() => one.connect()")
    peer.wait(lambda: len(peer.attempts) == 2 and len(peer.open) == 1, "the connect the page asked for")
