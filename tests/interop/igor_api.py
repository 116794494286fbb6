"""The API Igor's integration tests (``igor/test/test_integration.py``) talk to, written the way
Igor's README and example show it: plain handlers ``(out, data, **kwargs)`` in a dict, and a
``threading.Thread`` process whose ``process_id``, ``output`` and ``scope`` the server fills in.

Igor's tests expect an ``echo`` action and a process ``test_process`` that every second sends
``tick``/``tack`` to everyone and ``tick``/``special_for_CLIENT_1`` to the client that introduced
itself as ``CLIENT_1``.
"""

from __future__ import annotations

import time
from threading import Thread

from roomhub.actions import ActionsAPI


def echo(out, data, **kwargs):
    out.send(data)


ACTIONS = {
    "echo": echo,
}


class BackgroundProcess(Thread):
    def __init__(self):
        Thread.__init__(self)
        self.scope = None  # filled in by the server
        self.process_id = None  # filled in by the server
        self.output = None  # filled in by the server

    def run(self):
        while True:
            time.sleep(1)
            self.output.send("tick", "tack")
            try:
                self.output.send("tick", "special_for_CLIENT_1", client_id="CLIENT_1")
            except Exception:
                pass


API = ActionsAPI(ACTIONS)
API.add_process("test_process", BackgroundProcess())
