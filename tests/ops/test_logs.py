"""``--log-format json``: one JSON object a line, naming the face, room and connection where they
apply; text stays the default and shows them too."""

from __future__ import annotations

import json
from pathlib import Path

from hubtest import eventually, write_config
from pageclient import PageClient

CONFIG = """
    [pages."/p"]
    html = "page.html"
    [pages."/p".executors.shell]
    type = "always"
    command = ["sh", "-c", "cat"]
    """


async def test_json_logs_name_face_room_and_connection(tmp_path: Path, hub_process) -> None:
    hub = hub_process(write_config(tmp_path, CONFIG), "--log-format", "json")
    page = await PageClient.connect(f"{hub.ws}/p/ws?roomName=logged")
    await page.ws.send("{not json")
    await page.wait_for(lambda f: f["message"].get("code") == "bad-json")
    await page.close()

    def records() -> list[dict[str, object]]:
        lines = [line for line in hub.log().splitlines() if line.strip()]
        return [json.loads(line) for line in lines]  # every line is one JSON object

    found = await eventually(lambda: [r for r in records() if "torn down" in str(r["message"])], 20,
                             interval=0.1, what="the room's teardown logged")
    torn = found[0]
    assert torn["room"] == "/p:logged" and torn["level"] == "INFO" and torn["logger"] == "roomhub.rooms"
    bad = [r for r in records() if "bad-json" in str(r["message"])]
    assert bad, records()
    assert bad[0]["face"] == "pages" and bad[0]["room"] == "/p:logged"
    assert str(bad[0]["connection"]).startswith("127.0.0.1:")
    started = [r for r in records() if str(r["message"]).startswith("hub ")]
    assert started and "face" not in started[0] and "time" in started[0]  # hub-wide: no face


async def test_text_logs_by_default(tmp_path: Path, hub_process) -> None:
    hub = hub_process(write_config(tmp_path, CONFIG))
    page = await PageClient.connect(f"{hub.ws}/p/ws?roomName=plain")
    await page.ws.send("{not json")
    await page.wait_for(lambda f: f["message"].get("code") == "bad-json")
    await page.close()
    line = next(line for line in hub.log().splitlines() if "bad-json" in line)
    assert not line.startswith("{")
    assert "[face=pages room=/p:plain connection=127.0.0.1:" in line
