"""The widgets the tutorial does not show, on a page of our own, in a real Chromium.

A button whose program times out (and is asked to run again while it runs),
an image viewer following a PNG file, and the ``hidden`` attribute.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_helpers import require_vendor, wait_connected

pytestmark = pytest.mark.e2e

DRAW = '''\
import struct, sys, zlib
w, h = int(sys.argv[1]), int(sys.argv[2])
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
rows = b"".join(b"\\x00" + b"\\x30\\x60\\xd0" * w for _ in range(h))
png = (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
       + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
open("pic.png", "wb").write(png)
'''

CONFIG = f"""
[pages."/gallery"]
html = "page.html"

[pages."/gallery".executors.script]
type = "file"
path = "draw.py"
initial = '''{DRAW}'''

[pages."/gallery".executors.first]
type = "prologue"
command = ["python3", "draw.py", "1", "1"]

[pages."/gallery".executors.picture]
type = "file"
path = "pic.png"

[pages."/gallery".executors.draw]
type = "once"
command = ["python3", "draw.py", "3", "2"]

[pages."/gallery".executors.slow]
type = "once"
command = ["sh", "-c", "printf 'partial line'; sleep 30"]
timeout = 1
"""

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/roomhub.css">
<script src="/static/importmap.js"></script>
<script type="module" src="/static/roomhub.js"></script></head>
<body><main>
<rh-status></rh-status>
<rh-button id="slow" executor="slow" label="Slow"></rh-button>
<rh-button id="draw" executor="draw" label="Draw"></rh-button>
<rh-image-viewer executor="picture" mime="image/png" alt="the picture"></rh-image-viewer>
<rh-text-viewer id="hidden-false" executor="script" hidden="false"></rh-text-viewer>
</main></body></html>"""


def test_timeout_busy_image_and_hidden(hub_process, new_page, tmp_path: Path) -> None:
    require_vendor()
    site = tmp_path / "site"
    site.mkdir()
    (site / "page.html").write_text(PAGE)
    (site / "roomhub.toml").write_text(CONFIG)
    hub = hub_process(site / "roomhub.toml")
    page = new_page()
    page.goto(f"{hub.base}/gallery?roomName=widgets")
    wait_connected(page)

    # The image viewer shows the PNG the prologue drew, then follows the file.
    image = page.get_by_role("img", name="the picture")
    page.wait_for_function("() => document.querySelector('.rh-image').naturalWidth === 1")
    page.locator("#draw .rh-run").click()
    page.wait_for_function("() => document.querySelector('.rh-image').naturalWidth === 3")
    assert image.evaluate("img => img.naturalHeight") == 2

    # A run that outlives its timeout: disabled while running, "busy" to a second request,
    # then the timeout is said, and the unterminated output line is kept.
    slow = page.locator("#slow .rh-run")
    slow.click()
    page.wait_for_function(
        "() => document.querySelector('#slow .rh-chip').textContent === 'running…'")
    assert slow.is_disabled()
    page.evaluate("import('/static/connection.js').then(m => m.pageRoom().send('slow', null))")
    page.locator("#slow .rh-notice", has_text="Already running").wait_for()
    page.locator("#slow .rh-notice", has_text="longer than 1 s").wait_for()
    page.wait_for_function(
        "() => document.querySelector('#slow .rh-chip').textContent.startsWith('timed out')")
    assert page.locator("#slow .rh-output").inner_text() == "partial line"
    assert slow.is_enabled()

    # hidden follows HTML: any value hides (hidden="false" too); removing it shows.
    viewer = page.locator("#hidden-false")
    assert not viewer.is_visible()
    viewer.evaluate("el => el.removeAttribute('hidden')")
    viewer.locator(".cm-content", has_text="import struct").wait_for()
