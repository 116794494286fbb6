"""One proxied HTTP request, served by the hub's HTTP protocol without ASGI.

A :class:`ProxyExchange` is the :class:`~roomhub.transport.http_server.DirectExchange`
of a request under ``/backends/`` (see :meth:`BackendProxy.direct_route
<roomhub.backends.proxy.BackendProxy.direct_route>`): the hub's protocol
hands it the request from its parser callbacks and it streams that request
to an :class:`~roomhub.backends.upstream.UpstreamConnection` of the
instance and the response back to the client's transport, with no task per
request when the instance already listens and the pool has an idle
connection (a new connection or an on-demand start runs in a task).

Same behaviour as the ASGI path of :class:`~roomhub.backends.proxy.BackendProxy`:
partition from header, query or ``Referer``; hop-by-hop headers dropped;
``X-Forwarded-For/-Proto/-Host/-Prefix`` and ``X-Backends-Partition`` set;
statuses passed as they are; errors as JSON ``{"error", "detail"}``
(400/404 bad path or partition, 404 ``backend-not-running``, 502
``backend-unreachable``, 504 ``start-timeout`` from an on-demand start).

Framing (RFC 9112): a ``Content-Length`` request or response body passes
as it is; a chunked one is de-chunked by the parser and re-chunked; a
close-delimited response is re-chunked for an HTTP/1.1 client (for 1.0, it
is close-delimited again); ``HEAD``, 204 and 304 answers have no body.
``Expect: 100-continue`` is answered by the hub (and not forwarded).

Backpressure: a client that reads slowly pauses reading from the backend;
a backend that reads the request body slowly pauses reading from the
client; while the upstream connection is being opened, at most
:data:`HOLD_BYTES` of request body are held before the client is paused.
A broken upstream connection answers 502 when nothing was sent back yet
(a reused connection that broke before any response byte is retried once
on a new one for a body-less idempotent request), else the client's
connection is closed (its response is cut short).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..core.relay import RELAY_HEADERS
from ..transport.direct_http import DirectExchange
from . import protocol as p
from .hubs import LOOK, PartitionHubs
from .instances import Instance
from .partition import Partitions
from .upstream import Framing, Headers, UpstreamConnection, UpstreamPool

if TYPE_CHECKING:
    from ..core.metrics import HubMetrics

OnDemand = Callable[[str, str, str], Awaitable[Instance]]
"""``on_demand(partition, name, range)``: starts a missing backend, returns its instance."""


class ProxyRoutes(Protocol):
    """What an exchange uses of the proxy (:class:`~roomhub.backends.proxy.BackendProxy`)."""

    partitions: Partitions
    on_demand: OnDemand | None
    metrics: HubMetrics | None  # proxied requests by status, and their latency
    hubs: PartitionHubs | None  # in a cluster: the partitions' holders

    def target(self, scope: dict[str, Any]) -> tuple[str, str, str, str]:
        """``(partition, name, range, rest)`` of a request."""
        ...

    def not_running(self, partition: str, name: str, rng: str) -> p.BadRequest:
        """The 404 ``backend-not-running`` of a request with no matching instance."""
        ...

log = logging.getLogger("roomhub.backends.proxy")

HOLD_BYTES = 256 * 1024
"""Request body bytes held while the upstream connection opens, before the client is paused."""
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
LAST_CHUNK = b"0\r\n\r\n"

BodyFraming = str  # "none", "length" or "chunked"


def request_head(scope: dict[str, Any], host: bytes, rest: str, partition: str,
                 prefix: str) -> tuple[bytes, BodyFraming]:
    """The request line and headers for the backend, and how its body is framed.

    ``rest``: the path below the backend's prefix (percent-encoded as received); ``host``: the
    ``Host`` the backend gets; ``prefix``: ``X-Forwarded-Prefix``."""
    return _head(scope, rest.encode("latin-1"), host, p.forwarding_headers(scope, partition, prefix))


def hub_request_head(scope: dict[str, Any], relay_headers: list[tuple[bytes, bytes]]
                     ) -> tuple[bytes, BodyFraming]:
    """The request as the hub holding its partition gets it: path, ``Host`` and headers as the
    client sent them (hop-by-hop ones dropped) plus ``relay_headers``."""
    return _head(scope, scope.get("raw_path") or scope["path"].encode(), None, relay_headers)


def _head(scope: dict[str, Any], target: bytes, host: bytes | None,
          added: list[tuple[bytes, bytes]]) -> tuple[bytes, BodyFraming]:
    query = scope["query_string"]
    parts = [scope["method"].encode(), b" ", target, b"?" + query if query else b"", b" HTTP/1.1\r\n"]
    if host is not None:
        parts += [b"host: ", host, b"\r\n"]
    body = "none"
    for name, value in scope["headers"]:
        if name in p.NOT_FORWARDED or name in RELAY_HEADERS:
            if name == b"transfer-encoding" and b"chunked" in value.lower():
                body = "chunked"
            if name != b"host" or host is not None:
                continue
        if name == b"content-length" and body == "none":
            body = "length"
        parts += [name, b": ", value, b"\r\n"]
    for name, value in added:
        parts += [name, b": ", value, b"\r\n"]
    if body == "chunked":
        parts.append(b"transfer-encoding: chunked\r\n")
    parts.append(b"\r\n")
    return b"".join(parts), body


class ProxyExchange(DirectExchange):
    """One request to ``/backends/<name>/<range>/<path>``; see the module doc."""

    def __init__(self, proxy: ProxyRoutes, protocol: Any, scope: dict[str, Any], keep_alive: bool,
                 expect_100_continue: bool) -> None:
        super().__init__(protocol, scope, keep_alive, expect_100_continue)
        self.proxy = proxy
        self.inst: Instance | None = None
        self.hub: str | None = None  # in a cluster: the address of the partition's holder, forwarded to
        self.partition = ""
        self.deadline = 0.0  # loop time: forwarding to a holder that does not answer ends here
        self.pool: UpstreamPool | None = None
        self.conn: UpstreamConnection | None = None
        self.task: asyncio.Task[None] | None = None  # opening an upstream connection
        self.head = b""
        self.body: BodyFraming = "none"
        self.held: list[bytes] = []
        self.held_bytes = 0
        self.holding_paused = False
        self.request_done = False
        self.response_started = False
        self.down: Framing = "none"  # the response's framing towards the client
        self.retried = False
        self.attached = False  # the request's head went to an upstream connection
        self.started = time.perf_counter()
        self.status = 0  # the response's status, once known (0: none was sent: cut)

    def complete(self) -> None:
        if not self.response_complete:
            self._count()
        super().complete()

    def abort(self) -> None:
        if not self.response_complete:
            self._count()
        super().abort()

    def send_json(self, status: int, body: dict[str, Any],
                  headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        self.status = status
        super().send_json(status, body, headers)

    def _count(self) -> None:
        metrics = self.proxy.metrics
        if metrics is not None:
            metrics.proxy_requests.labels(str(self.status)).inc()
            metrics.proxy_duration.observe(time.perf_counter() - self.started)

    # -- the request -------------------------------------------------------------------------

    def start(self) -> None:
        proxy = self.proxy
        try:
            partition, name, rng, rest = proxy.target(self.scope)
        except p.BadRequest as exc:
            log.info("proxy http %s: %s", self.scope["path"], exc.detail)
            self.send_json(exc.status, exc.body())
            return
        self.partition = partition
        if proxy.hubs is not None:  # a cluster: the partition's instances are on its holder
            try:
                where = proxy.hubs.cached(self.scope, partition)
            except p.BadRequest as exc:
                self.send_json(exc.status, exc.body())
                return
            if where == LOOK:
                self._spawn(self._locate(name, rng, rest), f"locate-{partition}")
                return
            if where is not None:
                self._forward_to_hub(where)
                return
        self._serve_here(partition, name, rng, rest)

    def _serve_here(self, partition: str, name: str, rng: str, rest: str) -> None:
        inst = self.proxy.partitions.find(partition, name, rng)
        if inst is not None:
            self._forward(inst, partition, rest)
        elif self.proxy.on_demand is None:
            exc = self.proxy.not_running(partition, name, rng)
            log.info("proxy http %s: %s", self.scope["path"], exc.detail)
            self.send_json(exc.status, exc.body())
        else:  # not cancelled if the client leaves: the install goes on for the next request
            self._spawn(self._start_on_demand(partition, name, rng, rest), f"on-demand-{name}")

    def _spawn(self, work: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        tasks = self.protocol.tasks  # the server waits for (or cancels) them at shutdown
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _locate(self, name: str, rng: str, rest: str, pause: float = 0.0) -> None:
        """Ask the cluster which hub holds the partition (after ``pause`` seconds), then serve
        the request here or forward it there."""
        hubs = self.proxy.hubs
        assert hubs is not None
        if pause:
            await asyncio.sleep(pause)
        try:
            where = await hubs.route(self.scope, self.partition)
        except p.BadRequest as exc:
            log.info("proxy http %s: %s", self.scope["path"], exc.detail)
            if not self.disconnected:
                self.send_json(exc.status, exc.body())
            return
        if self.disconnected:
            return
        if where is None:
            self._serve_here(self.partition, name, rng, rest)
        else:
            self._forward_to_hub(where)

    def _forward_to_hub(self, address: str) -> None:
        """Forward the request, as the client sent it, to the hub at ``address`` holding its partition."""
        hubs = self.proxy.hubs
        assert hubs is not None
        loop = asyncio.get_running_loop()
        if not self.deadline:
            self.deadline = loop.time() + 2 * hubs.lease_seconds + 1
        self.hub, self.pool = address, hubs.pool(address)
        self.head, self.body = hub_request_head(self.scope, hubs.relay_headers(self.scope, self.partition))
        if self.body != "none":
            self.send_100_continue()
        conn = self.pool.take()
        if conn is not None:
            self._attach(conn)
        else:
            self._connect()

    def request_body(self, data: bytes) -> None:
        if self.conn is not None and self.body != "chunked":
            self.conn.write(data)  # a lone buffer goes to the socket as it is, without a join
            return
        framed = [b"%x\r\n" % len(data), data, b"\r\n"] if self.body == "chunked" else [data]
        if self.conn is not None:
            self.conn.writelines(framed)
            return
        self.held += framed
        self.held_bytes += len(data)
        if self.held_bytes > HOLD_BYTES and not self.holding_paused:
            self.holding_paused = True
            self.pause_request_body()

    def request_end(self) -> None:
        self.request_done = True
        if self.conn is not None:
            self._request_sent(self.conn)

    def client_gone(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.abandon()

    def client_paused(self) -> None:
        if self.conn is not None:
            self.conn.pause_reading()

    def client_resumed(self) -> None:
        if self.conn is not None:
            self.conn.resume_reading()

    async def _start_on_demand(self, partition: str, name: str, rng: str, rest: str) -> None:
        assert self.proxy.on_demand is not None
        try:
            inst = await self.proxy.on_demand(partition, name, rng)
        except p.BadRequest as exc:
            log.info("proxy http %s: %s", self.scope["path"], exc.detail)
            if not self.disconnected:
                self.send_json(exc.status, exc.body())
            return
        except Exception:
            log.exception("on-demand start of %s#%s in %s failed", name, rng, partition)
            if not self.disconnected:
                self.send_json(500, {"error": "internal", "detail": f"starting {name}#{rng} failed"})
            return
        if not self.disconnected:
            self._forward(inst, partition, rest)

    def _forward(self, inst: Instance, partition: str, rest: str) -> None:
        inst.last_used = time.monotonic()
        self.proxy.partitions.touch(partition)
        pool = inst.upstream
        self.inst, self.hub = inst, None
        if pool is None:
            self._unreachable(ConnectionRefusedError("the instance is not listening"))
            return
        self.pool = pool
        self.head, self.body = request_head(self.scope, pool.host_header, rest, partition, inst.base_path)
        if self.body != "none":
            self.send_100_continue()
        conn = pool.take()
        if conn is not None:
            self._attach(conn)
        else:
            self._connect()

    def _connect(self) -> None:
        assert self.pool is not None
        self.task = self.pool.connect(self._connected)

    def _connected(self, conn: UpstreamConnection | None, exc: BaseException | None) -> None:
        self.task = None
        if self.disconnected:
            if conn is not None:
                conn.close()
            return
        if conn is None:
            assert exc is not None
            self._unreachable(exc)
        else:
            self._attach(conn)

    def _may_resend(self) -> bool:
        return self.body == "none" and self.scope["method"] in IDEMPOTENT

    def _attach(self, conn: UpstreamConnection) -> None:
        self.conn = conn
        self.attached = True
        conn.begin(self, self.scope["method"] == "HEAD")
        held, self.held, self.held_bytes = self.held, [], 0
        conn.writelines([self.head, *held])
        if self.holding_paused:
            self.holding_paused = False
            self.resume_request_body()
        if self.request_done:
            self._request_sent(conn)

    def _request_sent(self, conn: UpstreamConnection) -> None:
        if self.body == "chunked":
            conn.write(LAST_CHUNK)
        conn.request_sent()

    def _unreachable(self, exc: BaseException) -> None:
        hub, inst = self.hub, self.inst
        if hub is not None:
            hubs = self.proxy.hubs
            assert hubs is not None
            hubs.unreachable(hub)
            resend = not self.attached or self._may_resend()
            if resend and asyncio.get_running_loop().time() < self.deadline:
                # The holder died: its lease lapses within the lease time, then another hub serves.
                log.info("proxy http %s: the partition's hub %s did not answer (%r): asking again",
                         self.scope["path"], hub, exc)
                name, rng, rest = self.proxy.target(self.scope)[1:]
                self._spawn(self._locate(name, rng, rest, hubs.heartbeat), f"locate-{self.partition}")
                return
            log.info("proxy http %s: the partition's hub %s did not answer: %r", self.scope["path"], hub, exc)
            detail = f"the hub of partition {self.partition!r} did not answer: {exc!r}"
            self.send_json(502, {"error": "hub-unreachable", "detail": detail})
            return
        assert inst is not None
        log.info("proxy to %s %s (%s) failed: %r", inst.name, inst.version, inst.uid[:8], exc)
        self.send_json(502, {"error": "backend-unreachable", "uid": inst.uid,
                             "detail": f"{inst.name} {inst.version} did not answer: {exc!r}"})

    # -- the response (ResponseSink) -----------------------------------------------------------

    def response_head(self, status: int, reason: bytes, headers: Headers, framing: Framing) -> None:
        self.response_started = True
        self.status = status
        if status == 409 and self.hub is not None and self.proxy.hubs is not None:
            self.proxy.hubs.moved(self.partition, self.hub)  # its lease moved: the client sends it again
        parts = [b"HTTP/1.1 %d " % status, reason, b"\r\n"]
        for name, value in headers:
            if name.lower() not in p.HOP_BY_HOP:
                parts += [name, b": ", value, b"\r\n"]
        if framing == "chunked" or framing == "close":
            if self.scope["http_version"] == "1.1":
                framing = "chunked"
                parts.append(b"transfer-encoding: chunked\r\n")
            else:
                self.keep_alive = False
        self.down = framing
        if not self.keep_alive:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        self.transport.write(b"".join(parts))

    def response_body(self, data: bytes) -> None:
        if self.down == "chunked":
            self.transport.writelines([b"%x\r\n" % len(data), data, b"\r\n"])
        else:
            self.transport.write(data)

    def response_end(self) -> None:
        conn, self.conn = self.conn, None
        if self.down == "chunked":
            self.transport.write(LAST_CHUNK)
        elif self.down == "close":
            self.keep_alive = False
        if conn is not None and not self.request_done:  # answered before the whole request came
            conn.abandon()
        self.complete()

    def upstream_failed(self, exc: BaseException, retryable: bool) -> None:
        self.conn = None
        if self.disconnected or self.response_complete:
            return
        if retryable and not self.retried and self._may_resend() and not self.response_started:
            self.retried = True
            log.debug("proxy to %s: a reused connection broke (%r), retrying", self._upstream_name(), exc)
            self._connect()
            return
        if not self.response_started:
            self._unreachable(exc)
        else:
            log.info("proxy stream from %s broken: %r", self._upstream_name(), exc)
            self.abort()

    def _upstream_name(self) -> str:
        inst = self.inst
        if self.hub is not None or inst is None:
            return f"hub {self.hub}"
        return f"{inst.name} {inst.version} ({inst.uid[:8]})"

    def upstream_paused(self) -> None:
        self.pause_request_body()

    def upstream_resumed(self) -> None:
        self.resume_request_body()
