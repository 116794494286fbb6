"""Chunked uploads over the widgets socket: reassembly, progress, size limit, timeout."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from widgets_helpers import Browser, serve_app

from roomhub.widgets import App, WidgetSession


def upload_app(events: list[tuple[str, Any]]) -> App:
    app = App()

    @app.on_connect
    async def setup(session: WidgetSession) -> None:
        dialog = await session.widgets.FileDialog()
        dialog.on("activated", lambda payload: events.append(("activated", payload)))
        dialog.on("progress", lambda progress: events.append(("progress", progress)))

    return app


async def send_file(
    b: Browser, transfer_id: int, data: bytes, chunk: int, chunks: int | None = None
) -> None:
    parts = [data[i : i + chunk] for i in range(0, len(data), chunk)] or [b""]
    await b.callback(
        1,
        "activated",
        {
            "transfer_id": transfer_id,
            "files": [
                {
                    "name": "a.bin",
                    "size": len(data),
                    "type": "application/octet-stream",
                    "encoding": "bytes",
                }
            ],
        },
    )
    for i, part in enumerate(parts[:chunks]):
        await b.send(
            {
                "type": "binary-chunk",
                "wid": 1,
                "transfer_id": transfer_id,
                "file_index": 0,
                "file_count": 1,
                "chunk_index": i,
                "num_chunks": len(parts),
                "encoding": "binary",
            }
        )
        await b.send(part)


async def wait_events(events: list[Any], n: int) -> None:
    async with asyncio.timeout(5):
        while len(events) < n:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_upload_is_reassembled_with_progress(tmp_path: Path) -> None:
    events: list[tuple[str, Any]] = []
    data = bytes(range(256)) * 1200  # 307200 bytes in 3 chunks
    async with serve_app(upload_app(events), tmp_path) as h:
        b = await Browser.open(h.ws)
        await b.wait_for(lambda m: len(b.of("listen")) == 2)
        await send_file(b, 1, data, 128 * 1024)
        await wait_events(events, 4)
        progress = [e[1] for e in events if e[0] == "progress"]
        assert [p["transferred_bytes"] for p in progress] == [131072, 262144, 307200]
        assert progress[-1]["complete"] and progress[-1]["total_bytes"] == len(data)
        kind, payload = events[-1]
        assert kind == "activated" and payload["files"][0]["data"] == data
        assert payload["files"][0]["name"] == "a.bin"
        await b.close()


async def test_upload_over_the_limit_is_refused(tmp_path: Path) -> None:
    events: list[tuple[str, Any]] = []
    async with serve_app(upload_app(events), tmp_path, upload_max_bytes=1000) as h:
        b = await Browser.open(h.ws)
        await b.wait_for(lambda m: len(b.of("listen")) == 2)
        await send_file(b, 1, b"x" * 5000, 1000)
        await wait_events(events, 1)
        assert events[0][0] == "progress" and "limit" in events[0][1]["error"]
        await send_file(b, 2, b"small", 1000)  # the connection still works
        await wait_events(events, 3)
        assert events[-1][0] == "activated" and events[-1][1]["files"][0]["data"] == b"small"
        assert b.close_code is None
        await b.close()


async def test_incomplete_upload_times_out(tmp_path: Path) -> None:
    events: list[tuple[str, Any]] = []
    async with serve_app(upload_app(events), tmp_path, upload_timeout=0.3) as h:
        b = await Browser.open(h.ws)
        await b.wait_for(lambda m: len(b.of("listen")) == 2)
        await send_file(b, 1, b"y" * 3000, 1000, chunks=1)  # 1 of 3 chunks, then silence
        await wait_events(events, 2)
        assert events[0][1]["transferred_bytes"] == 1000
        assert events[1][0] == "progress" and events[1][1]["error"] == "timed out"
        session = h.hub.face("widgets").registry.get(b.session_id)
        assert all(not t.transfers for t in session._uploads.values())
        await b.close()
