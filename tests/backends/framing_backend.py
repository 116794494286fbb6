"""A backend of the standard library only that answers with every HTTP/1.1 framing, for the proxy tests.

Listens on ``ROOMHUB_SOCKET`` (Unix) or ``ROOMHUB_HOST``/``ROOMHUB_PORT``; keep-alive
HTTP/1.1. Each connection gets a number (``conn`` in the answers) so that tests see
which upstream connection carried a request. Paths:

- ``GET /``: ``{"ok": true, "conn"}`` (readiness);
- ``GET|HEAD /text``: ``hello world`` with ``Content-Length``;
- ``POST /echo``: reads a ``Content-Length`` or chunked body, answers ``{"bytes", "sha256",
  "chunked", "conn", "headers"}``;
- ``GET /chunked/N``: N chunks ``piece-i\\n`` with ``Transfer-Encoding: chunked``;
- ``GET /close-delimited``: a body without length, ended by closing the connection;
- ``GET /status/CODE``: an empty answer with that status (204, 304);
- ``GET /big/N``: N bytes in 64 KiB writes, counted in ``written`` (see ``/events``);
- ``GET /cut/N``: announces 2N bytes, sends N, closes;
- ``GET /sleep/S``: answers after S seconds;
- ``GET /drop-next``: answers, then closes the connection when its next request arrives,
  without answering it;
- ``GET /events``: ``{"events": [...], "written": N}`` (aborted uploads, dropped requests).
"""

import hashlib
import http.server
import itertools
import json
import os
import socketserver
import threading
import time

COUNTER = itertools.count(1)
EVENTS: list[str] = []
WRITTEN = [0]
LOCK = threading.Lock()


def event(text: str) -> None:
    with LOCK:
        EVENTS.append(text)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.conn = next(COUNTER)
        self.drop_next = False

    def answer(self, status, body=b"", content_type="application/json", headers=()):
        self.send_response(status)
        self.send_header("content-type", content_type)
        if status not in (204, 304):
            self.send_header("content-length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and status not in (204, 304):
            self.wfile.write(body)

    def json(self, value):
        self.answer(200, json.dumps(value).encode())

    def dropped(self):
        if self.drop_next:
            event(f"dropped {self.command} {self.path} conn={self.conn}")
            self.close_connection = True
            return True
        return False

    def do_HEAD(self):
        if self.dropped():
            return
        self.answer(200, b"hello world", "text/plain")

    def do_GET(self):
        if self.dropped():
            return
        parts = self.path.split("?")[0].strip("/").split("/")
        kind, arg = parts[0], parts[1] if len(parts) > 1 else ""
        if kind == "":
            self.json({"ok": True, "conn": self.conn})
        elif kind == "text":
            self.answer(200, b"hello world", "text/plain")
        elif kind == "conn":
            self.json({"conn": self.conn, "path": self.path})
        elif kind == "chunked":
            self.send_response(200)
            self.send_header("transfer-encoding", "chunked")
            self.send_header("content-type", "text/plain")
            self.end_headers()
            for i in range(int(arg)):
                piece = f"piece-{i}\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        elif kind == "close-delimited":
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.send_header("connection", "close")
            self.end_headers()
            for i in range(5):
                self.wfile.write(f"line {i}\n".encode())
                self.wfile.flush()
            self.close_connection = True
        elif kind == "status":
            self.answer(int(arg), headers=[("etag", '"v1"')])
        elif kind == "big":
            size = int(arg)
            self.send_response(200)
            self.send_header("content-type", "application/octet-stream")
            self.send_header("content-length", str(size))
            self.end_headers()
            block = b"\xab" * 65536
            sent = 0
            while sent < size:
                n = min(len(block), size - sent)
                self.wfile.write(block[:n])
                sent += n
                with LOCK:
                    WRITTEN[0] += n
        elif kind == "cut":
            size = int(arg)
            self.send_response(200)
            self.send_header("content-length", str(2 * size))
            self.end_headers()
            self.wfile.write(b"x" * size)
            self.wfile.flush()
            self.close_connection = True
        elif kind == "sleep":
            time.sleep(float(arg))
            self.json({"slept": float(arg), "conn": self.conn})
        elif kind == "drop-next":
            self.json({"conn": self.conn})
            self.drop_next = True
        elif kind == "events":
            with LOCK:
                self.json({"events": list(EVENTS), "written": WRITTEN[0]})
        else:
            self.answer(404, b'{"detail": "not found"}')

    def do_POST(self):
        if self.dropped():
            return
        digest = hashlib.sha256()
        total = 0
        chunked = "chunked" in self.headers.get("transfer-encoding", "")
        try:
            if chunked:
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        break
                    data = self.rfile.read(size)
                    if len(data) < size:
                        raise ConnectionError("short chunk")
                    digest.update(data)
                    total += size
                    self.rfile.readline()
            else:
                left = int(self.headers.get("content-length", "0"))
                while left:
                    data = self.rfile.read(min(left, 65536))
                    if not data:
                        raise ConnectionError("short body")
                    digest.update(data)
                    total += len(data)
                    left -= len(data)
        except (ConnectionError, ValueError) as exc:
            event(f"upload aborted conn={self.conn} after {total} bytes: {exc}")
            self.close_connection = True
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.json({"bytes": total, "sha256": digest.hexdigest(), "chunked": chunked, "conn": self.conn,
                   "headers": headers})

    def log_message(self, fmt, *args):
        pass


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class TcpServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


if os.environ.get("ROOMHUB_SOCKET"):
    server = UnixServer(os.environ["ROOMHUB_SOCKET"], Handler)
else:
    server = TcpServer((os.environ["ROOMHUB_HOST"], int(os.environ["ROOMHUB_PORT"])), Handler)
print("listening", flush=True)
server.serve_forever()
