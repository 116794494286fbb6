"""A document client that floods: one-character Yjs updates to ``/yjs/<room>`` as fast as the
socket takes them, until it is killed or closed (then it prints the close code and reason).

Run as ``python yjs_flooder.py ws://host:port/yjs/<room>``; prints ``flooding`` once the
room is ready. A separate process, so that its sending does not share a loop (or a core)
with what the test measures.
"""

from __future__ import annotations

import asyncio
import sys

from pycrdt import Doc, Text, create_update_message
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


async def flood(url: str) -> None:
    doc = Doc()
    text = doc.get("t", type=Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    async with connect(url, max_size=None, ping_interval=None) as ws:
        await ws.recv()  # the hub's sync step 1: the room is ready
        print("flooding", flush=True)
        try:
            while True:
                for _ in range(64):
                    text += "x"
                    await ws.send(create_update_message(updates.pop()))
                await asyncio.sleep(0)  # a send that need not wait does not yield: let the reader run
        except ConnectionClosed as exc:
            print("closed", exc.rcvd.code if exc.rcvd else None, exc.rcvd.reason if exc.rcvd else "",
                  flush=True)


if __name__ == "__main__":
    asyncio.run(flood(sys.argv[1]))
