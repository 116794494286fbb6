"""A backend made of the standard library only, for the tests (venv and Docker).

Listens on ``ROOMHUB_SOCKET`` (Unix) or ``ROOMHUB_HOST``/``ROOMHUB_PORT``.
``MODE``: ``ok`` (default), ``crash`` (prints and exits 3), ``never`` (never
listens), ``dep`` (before listening, calls ``DEP_PATH`` on the hub through the
proxy in its own partition, with ``ROOMHUB_TOKEN`` when there is one, and
serves the answer). ``GET /`` answers
``{"name", "partition", "greeting", "dep", "startedAt"}``.
"""

import http.client
import http.server
import json
import os
import socket
import socketserver
import sys
import time

MODE = os.environ.get("MODE", "ok")
STARTED = time.time()
print(f"starting {os.environ.get('ROOMHUB_BACKEND_NAME')} mode={MODE}", flush=True)
if MODE == "crash":
    print("boom: this backend crashes on purpose", flush=True)
    sys.exit(3)
if MODE == "never":
    time.sleep(3600)

DEP = None
if MODE == "dep":
    hub = os.environ["ROOMHUB_URL"].removeprefix("http://")
    host, port = hub.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    headers = {"x-backends-partition": os.environ["ROOMHUB_PARTITION"]}
    if os.environ.get("ROOMHUB_TOKEN"):  # the hub asks for tokens: this instance's own
        headers["authorization"] = "Bearer " + os.environ["ROOMHUB_TOKEN"]
    conn.request("GET", os.environ["DEP_PATH"], headers=headers)
    response = conn.getresponse()
    DEP = {"status": response.status, "body": json.loads(response.read() or b"null")}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({
            "name": os.environ.get("ROOMHUB_BACKEND_NAME"), "partition": os.environ.get("ROOMHUB_PARTITION"),
            "greeting": os.environ.get("GREETING"), "dep": DEP, "startedAt": STARTED, "path": self.path,
        }).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print("request", self.command, self.path, flush=True)

    def address_string(self):
        return "hub"


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


if os.environ.get("ROOMHUB_SOCKET"):
    path = os.environ["ROOMHUB_SOCKET"]
    server = UnixServer(path, Handler)
    os.chmod(path, 0o666)
else:
    server = http.server.ThreadingHTTPServer((os.environ["ROOMHUB_HOST"], int(os.environ["ROOMHUB_PORT"])),
                                             Handler)
    assert server.socket.family == socket.AF_INET
print("listening", flush=True)
server.serve_forever()
