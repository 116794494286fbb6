"""The proxy: ``/backends/<name>/<semver>/<path>`` to a backend instance, streaming, every method.

No request buffering anywhere, no per-request parsing beyond the path, the
partition and one pass over the headers; the hub's origin and token checks
apply to both forms:

- **HTTP**: served by the hub's HTTP protocol without ASGI through
  :meth:`BackendProxy.direct_route` (:mod:`.exchange`, over the instance's
  keep-alive pool of :mod:`.upstream`): the request body is streamed to the
  backend as it arrives and the response body streamed back as it comes (no
  decoding, so ``content-encoding`` passes through unchanged). Any method.
  Hop-by-hop headers (RFC 9110 section 7.6.1) are dropped;
  ``X-Forwarded-For/-Proto/-Host/-Prefix`` and ``X-Backends-Partition``
  are set. Upstream statuses (4xx and 5xx too) are passed as they are. An
  app served without the hub's protocol (``asgi_app()`` mounted elsewhere)
  answers these requests 501.
- **WebSocket**: a raw ASGI app served ahead of the hub's router
  (:meth:`~roomhub.core.face.Face.shortcuts`); the handshake is forwarded with the ``websockets`` client
  (subprotocols, cookies, authorization); frames are relayed both ways,
  text as text and binary as binary, and a close on either side is
  forwarded with its code and reason.

The partition comes from the ``X-Backends-Partition`` header, else the
``backends-partition`` query parameter, else that parameter in the
``Referer`` (so a ``/docs`` page opened with ``?backends-partition=P``
keeps its own calls in ``P``), else ``Default``. The version segment is an
npm range (``0.1.0``, ``^0.1.0``, ``*``): the newest matching listening
instance of the partition is used. With none running, the backend is
installed on demand (with its dependencies, no owner) when ``on_demand``,
else the answer is 404 ``backend-not-running``. Errors are JSON
``{"error", "detail"}``: 400 bad path or partition, 404, 502
``backend-unreachable``, 504 ``start-timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import websockets
from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.client import unix_connect as ws_unix_connect

from ..core.errors import CloseCode
from ..core.relay import RELAY_HEADERS
from ..core.rooms import validate_room_name
from ..transport.direct_http import DirectRoute
from . import protocol as p
from .exchange import OnDemand, ProxyExchange
from .hubs import PartitionHubs
from .instances import Instance
from .partition import Partitions

if TYPE_CHECKING:
    from ..core.metrics import HubMetrics

log = logging.getLogger("roomhub.backends.proxy")

WS_HANDSHAKE = frozenset({
    "host", "upgrade", "connection", "sec-websocket-key", "sec-websocket-version",
    "sec-websocket-extensions", "sec-websocket-protocol", "content-length", "origin",
})
QUERY_PARTITION = "backends-partition"



def partition_of(header: str | None, query: bytes, referer: str | None = None) -> str:
    """The request's partition from its ``X-Backends-Partition`` header, query string and ``Referer``
    (see the module doc); raises ``BadRequest`` if it is not a valid name."""
    partition = header
    if not partition and query:
        values = parse_qs(query.decode("latin-1")).get(QUERY_PARTITION)
        partition = values[0] if values else None
    if not partition and referer:
        try:
            referer_query = urlsplit(referer).query
        except ValueError:  # not a URL (e.g. "http://[::1"): ignored, as a missing one would be
            referer_query = ""
        values = parse_qs(referer_query).get(QUERY_PARTITION)
        partition = values[0] if values else None
    partition = partition or p.DEFAULT_PARTITION
    try:
        return validate_room_name(partition)
    except ValueError as exc:
        raise p.BadRequest("bad-partition", f"partition {partition!r}: {exc}") from None


def split_path(raw_path: bytes) -> tuple[str, str, str]:
    """``/backends/<name>/<range>/<rest>`` -> ``(name, range, "/<rest>")`` (``rest`` kept percent-encoded)."""
    parts = raw_path.decode("latin-1").split("/", 4)
    if len(parts) < 4 or parts[1] != "backends" or not parts[2] or not parts[3]:
        raise p.BadRequest("bad-backend-path", "expected /backends/<name>/<version or range>/<path>",
                           status=404)
    name, rng = unquote(parts[2]), unquote(parts[3])
    if not p.NAME_RE.match(name):
        raise p.BadRequest("bad-backend-path", f"invalid backend name {name!r}", status=404)
    p.npm_spec(rng)
    return name, rng, "/" + (parts[4] if len(parts) > 4 else "")


async def send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


class BackendProxy:
    """The proxy behind ``/backends``: :meth:`direct_route` for HTTP, the ASGI app for WebSockets;
    ``on_demand(partition, name, range)`` starts a missing backend."""

    def __init__(self, partitions: Partitions, on_demand: OnDemand | None, max_frame_bytes: int,
                 note_server: Callable[[Scope], None] | None = None) -> None:
        self.partitions = partitions
        self.on_demand = on_demand
        self.max_frame_bytes = max_frame_bytes
        self.note_server = note_server
        self.metrics: HubMetrics | None = None  # the hub's: proxied requests, their latency
        self.hubs: PartitionHubs | None = None  # in a cluster: the partitions' holders (see .hubs)

    def target(self, scope: Scope) -> tuple[str, str, str, str]:
        """``(partition, name, range, rest)`` of a request (see :func:`split_path`, :func:`partition_of`);
        raises ``BadRequest``. Notes the hub's address on the first call."""
        if self.note_server is not None:
            self.note_server(scope)
        partition_header = referer = None
        for key, value in scope["headers"]:
            if key == b"x-backends-partition":
                partition_header = value.decode("latin-1")
            elif key == b"referer":
                referer = value.decode("latin-1")
        name, rng, rest = split_path(scope.get("raw_path") or scope["path"].encode())
        return partition_of(partition_header, scope.get("query_string", b""), referer), name, rng, rest

    @staticmethod
    def not_running(partition: str, name: str, rng: str) -> p.BadRequest:
        """The 404 ``backend-not-running`` of a request with no matching instance."""
        return p.BadRequest("backend-not-running",
                            f"no instance of {name}#{rng} runs in partition {partition!r}",
                            status=404, name=name, partitionId=partition)

    def direct_route(self) -> DirectRoute:
        """HTTP requests under ``/backends/`` served by the hub's HTTP protocol without ASGI
        (:class:`~roomhub.backends.exchange.ProxyExchange`); WebSockets stay on :meth:`__call__`."""
        def open_exchange(protocol: Any, scope: dict[str, Any], keep_alive: bool,
                          expect_100_continue: bool) -> ProxyExchange:
            return ProxyExchange(self, protocol, scope, keep_alive, expect_100_continue)

        return DirectRoute(b"/backends/", open_exchange)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":  # only reached when the hub's HTTP protocol is not serving
            await send_json(send, 501, {"error": "not-served", "detail": "the backends proxy's HTTP "
                                        "path is served by the hub's own HTTP protocol (roomhub serve)"})
            return
        if (await receive())["type"] != "websocket.connect":
            return
        hub: str | None = None
        inst: Instance | None = None
        try:
            partition, name, rng, rest = self.target(scope)
            deadline = time.monotonic() + (2 * self.hubs.lease_seconds + 1 if self.hubs is not None else 0)
            while True:
                hub = await self.hubs.resolve(scope, partition) if self.hubs is not None else None
                if hub is None:
                    inst = await self._instance(partition, name, rng)
                    inst.last_used = time.monotonic()
                    self.partitions.touch(partition)
                upstream = await self._open(scope, partition, inst, rest, hub)
                if upstream is not None:
                    break
                if time.monotonic() > deadline:  # a hub that stays unreachable and holds the lease
                    raise p.BadRequest("cluster-unavailable", f"the hub of partition {partition!r} "
                                       "cannot be reached: try again later", status=503)
        except p.BadRequest as exc:
            log.info("proxy WebSocket %s: %s", scope["path"], exc.detail)
            await self._deny(scope, send, exc.status, exc.body())
            return
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
        await relay(receive, send, upstream, inst)

    async def _instance(self, partition: str, name: str, rng: str) -> Instance:
        inst = self.partitions.find(partition, name, rng)
        if inst is not None:
            return inst
        if self.on_demand is None:
            raise self.not_running(partition, name, rng)
        return await self.on_demand(partition, name, rng)

    @staticmethod
    def _forward_headers(scope: Scope, inst: Instance, partition: str) -> list[tuple[str, str]]:
        """The request's headers for the backend: hop-by-hop ones dropped, the partition and
        ``X-Forwarded-*`` ones set."""
        kept = [(k, v) for k, v in scope["headers"] if k not in p.NOT_FORWARDED and k not in RELAY_HEADERS]
        return [(k.decode("latin-1"), v.decode("latin-1"))
                for k, v in kept + p.forwarding_headers(scope, partition, inst.base_path)]

    async def _deny(self, scope: Scope, send: Send, status: int, body: dict[str, Any]) -> None:
        if "websocket.http.response" in scope.get("extensions", {}):
            data = json.dumps(body).encode()
            await send({"type": "websocket.http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "websocket.http.response.body", "body": data})
        else:
            await send({"type": "websocket.close", "code": CloseCode.INTERNAL_ERROR,
                        "reason": body.get("detail", "")[:120]})

    async def _open(self, scope: Scope, partition: str, inst: Instance | None, rest: str,
                    hub: str | None) -> ClientConnection | None:
        """The upstream WebSocket: to ``inst``, or (``hub``: in a cluster) to the proxy of the hub
        holding the partition, which serves it as the client's own. None when that hub is gone
        (ask again). Raises ``BadRequest``: 502 when the backend refused, the refusal of the
        holding hub as it answered."""
        query = scope.get("query_string", b"").decode("latin-1")
        offered = b",".join(v for k, v in scope["headers"] if k == b"sec-websocket-protocol")
        subprotocols = [s.strip() for s in offered.decode("latin-1").split(",") if s.strip()]
        options: dict[str, Any] = {
            "subprotocols": subprotocols or None, "max_size": self.max_frame_bytes, "open_timeout": 10,
            "compression": None, "ping_interval": None,
        }
        if hub is not None:
            assert self.hubs is not None
            headers = dict(scope["headers"])
            kept = [(k, v) for k, v in scope["headers"]
                    if k not in p.NOT_FORWARDED and k not in RELAY_HEADERS]
            extra = [(k.decode("latin-1"), v.decode("latin-1"))
                     for k, v in kept + self.hubs.relay_headers(scope, partition)]
            extra = [(k, v) for k, v in extra if k not in WS_HANDSHAKE]
            origin = headers.get(b"origin")
            path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
            try:
                return await ws_connect(f"ws://{hub}{path}" + (f"?{query}" if query else ""),
                                        additional_headers=extra, user_agent_header=None,
                                        origin=origin.decode("latin-1") if origin else None, **options)
            except websockets.InvalidStatus as exc:  # the holder's own answer, passed on
                response = exc.response
                try:
                    body = json.loads(response.body or b"")
                except ValueError:
                    body = {"error": "hub-refused", "detail": (response.body or b"").decode(errors="replace")}
                if response.status_code == 409:
                    self.hubs.moved(partition, hub)
                raise p.BadRequest(str(body.get("error", "hub-refused")), str(body.get("detail", "")),
                                   status=response.status_code) from None
            except (OSError, websockets.exceptions.WebSocketException, TimeoutError) as exc:
                log.info("proxy WebSocket %s: the partition's hub %s did not answer (%r): asking again",
                         scope["path"], hub, exc)
                self.hubs.unreachable(hub)
                await asyncio.sleep(self.hubs.heartbeat)
                return None
        assert inst is not None
        extra = [(k, v) for k, v in self._forward_headers(scope, inst, partition) if k not in WS_HANDSHAKE]
        path = rest + ("?" + query if query else "")
        try:
            if inst.socket_path is not None:
                return await ws_unix_connect(str(inst.socket_path), f"ws://backend{path}",
                                             additional_headers=extra, **options)
            return await ws_connect(f"ws://127.0.0.1:{inst.port}{path}", additional_headers=extra, **options)
        except (OSError, websockets.exceptions.WebSocketException, TimeoutError) as exc:
            log.info("proxy WebSocket to %s (%s) refused: %r", inst.name, inst.uid[:8], exc)
            raise p.BadRequest("backend-unreachable", f"{inst.name} refused the WebSocket: {exc}",
                               status=502, uid=inst.uid) from None


async def relay(receive: Receive, send: Send, upstream: ClientConnection, inst: Instance | None) -> None:
    """Relay frames between the ASGI WebSocket and ``upstream`` until either side closes (``inst``:
    the backend's instance, whose last use this notes; None for another hub)."""
    label = uuid.uuid4().hex[:6]

    def used() -> None:
        if inst is not None:
            inst.last_used = time.monotonic()

    async def down_to_up() -> None:
        while True:
            message = await receive()
            used()
            if message["type"] == "websocket.disconnect":
                await upstream.close(message.get("code", 1000) if message.get("code", 1000) != 1006 else 1000,
                                     message.get("reason") or "")
                return
            if message.get("text") is not None:
                await upstream.send(message["text"])
            elif message.get("bytes") is not None:
                await upstream.send(message["bytes"])

    async def up_to_down() -> None:
        try:
            async for frame in upstream:
                used()
                if isinstance(frame, str):
                    await send({"type": "websocket.send", "text": frame})
                else:
                    await send({"type": "websocket.send", "bytes": frame})
        except websockets.exceptions.ConnectionClosed:
            pass
        rcvd = upstream.close_rcvd
        code = rcvd.code if rcvd is not None and rcvd.code not in (1005, 1006) else 1000
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": code, "reason": rcvd.reason if rcvd else ""})

    tasks = [asyncio.create_task(down_to_up(), name=f"ws-down-{label}"),
             asyncio.create_task(up_to_down(), name=f"ws-up-{label}")]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await upstream.close()
