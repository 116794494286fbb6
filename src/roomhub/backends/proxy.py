"""The proxy: ``/backends/<name>/<semver>/<path>`` to a backend instance, streaming, every method.

A raw ASGI app (no request buffering anywhere), served ahead of the hub's
router and FastAPI middleware (:meth:`~roomhub.faces.Face.shortcuts`; the
origin and token checks still apply), with no per-request parsing beyond
the path, the partition and one pass over the headers:

- **HTTP**: served by the hub's HTTP protocol without ASGI through
  :meth:`BackendProxy.direct_route` (:mod:`.exchange`, over the instance's
  keep-alive pool of :mod:`.upstream`; the same behaviour as below). The
  ASGI form here remains for an app served without that protocol: the
  request body is streamed to the backend as it arrives (aiohttp, over the
  instance's Unix socket or loopback port; see
  :func:`~roomhub.backends.instances.upstream_session` for why not httpx)
  and the response body streamed back chunk by chunk (no decoding, so
  ``content-encoding`` and ``content-length`` pass through unchanged). Any
  method. Hop-by-hop headers (RFC 9110 section 7.6.1) are dropped;
  ``X-Forwarded-For/-Proto/-Host/-Prefix`` and ``X-Backends-Partition``
  are set. Upstream statuses (4xx and 5xx too) are passed as they are.
- **WebSocket**: the handshake is forwarded with the ``websockets`` client
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
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import aiohttp
import websockets
from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.client import unix_connect as ws_unix_connect
from yarl import URL

from ..http_server import DirectRoute
from ..rooms import validate_room_name
from . import protocol as p
from .instances import Instance
from .partition import Partitions

log = logging.getLogger("roomhub.backends.proxy")

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
    b"transfer-encoding", b"upgrade", b"host", b"proxy-connection",
})
WS_HANDSHAKE = frozenset({
    "host", "upgrade", "connection", "sec-websocket-key", "sec-websocket-version",
    "sec-websocket-extensions", "sec-websocket-protocol", "content-length", "origin",
})
NOT_FORWARDED = HOP_BY_HOP | {b"x-backends-partition"}
QUERY_PARTITION = "backends-partition"

OnDemand = Callable[[str, str, str], Awaitable[Instance]]


def partition_of(header: str | None, query: bytes, referer: str | None = None) -> str:
    """The request's partition from its ``X-Backends-Partition`` header, query string and ``Referer``
    (see the module doc); raises ``BadRequest`` if it is not a valid name."""
    partition = header
    if not partition and query:
        values = parse_qs(query.decode("latin-1")).get(QUERY_PARTITION)
        partition = values[0] if values else None
    if not partition and referer:
        values = parse_qs(urlsplit(referer).query).get(QUERY_PARTITION)
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
    """The ASGI app behind ``/backends``; ``on_demand(partition, name, range)`` starts a missing backend."""

    def __init__(self, partitions: Partitions, on_demand: OnDemand | None, max_frame_bytes: int,
                 note_server: Callable[[Scope], None] | None = None) -> None:
        self.partitions = partitions
        self.on_demand = on_demand
        self.max_frame_bytes = max_frame_bytes
        self.note_server = note_server

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
        from .exchange import ProxyExchange

        def open_exchange(protocol: Any, scope: dict[str, Any], keep_alive: bool,
                          expect_100_continue: bool) -> ProxyExchange:
            return ProxyExchange(self, protocol, scope, keep_alive, expect_100_continue)

        return DirectRoute(b"/backends/", open_exchange)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            partition, name, rng, rest = self.target(scope)
            inst = await self._instance(partition, name, rng)
        except p.BadRequest as exc:
            log.info("proxy %s %s: %s", scope["type"], scope["path"], exc.detail)
            if scope["type"] == "http":
                await send_json(send, exc.status, exc.body())
            else:
                await self._deny(scope, send, exc.status, exc.body())
            return
        inst.last_used = time.monotonic()
        self.partitions.touch(partition)
        if scope["type"] == "http":
            await self._http(scope, receive, send, inst, rest, partition)
        else:
            await self._websocket(scope, receive, send, inst, rest, partition)

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
        out = []
        host = ""
        for key, value in scope["headers"]:
            if key not in NOT_FORWARDED:
                out.append((key.decode("latin-1"), value.decode("latin-1")))
            elif key == b"host":
                host = value.decode("latin-1")
        client = scope.get("client") or ("", 0)
        out += [
            ("x-backends-partition", partition),
            ("x-forwarded-for", str(client[0])),
            ("x-forwarded-proto", "https" if scope.get("scheme") in ("https", "wss") else "http"),
            ("x-forwarded-host", host),
            ("x-forwarded-prefix", inst.base_path),
        ]
        return out

    async def _http(self, scope: Scope, receive: Receive, send: Send, inst: Instance, rest: str,
                    partition: str) -> None:
        assert inst.client is not None
        query = scope.get("query_string", b"")
        url = URL(inst.origin + rest + ("?" + query.decode("latin-1") if query else ""), encoded=True)
        has_body = any(k == b"content-length" or k == b"transfer-encoding" for k, _ in scope["headers"])

        async def body() -> AsyncIterator[bytes]:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ConnectionResetError("the client went away while sending the body")
                chunk = message.get("body", b"")
                if chunk:
                    yield chunk
                if not message.get("more_body", False):
                    return

        try:
            response = await inst.client.request(
                scope["method"], url, headers=self._forward_headers(scope, inst, partition),
                data=body() if has_body else None, allow_redirects=False, compress=None,
            )
        except (aiohttp.ClientError, ConnectionResetError, OSError, TimeoutError) as exc:
            log.info("proxy to %s %s (%s) failed: %r", inst.name, inst.version, inst.uid[:8], exc)
            await send_json(send, 502, {"error": "backend-unreachable", "uid": inst.uid,
                                        "detail": f"{inst.name} {inst.version} did not answer: {exc!r}"})
            return
        try:
            out = [(k, v) for k, v in response.raw_headers if k.lower() not in HOP_BY_HOP]
            await send({"type": "http.response.start", "status": response.status, "headers": out})
            content = response.content
            while True:
                # whatever has arrived, as it is (at most about two read_bufsize); the last
                # chunk of a body carries the end of the response with it
                chunk = await content.readany()
                last = not chunk or content.at_eof()
                await send({"type": "http.response.body", "body": chunk, "more_body": not last})
                if last:
                    break
        except (aiohttp.ClientError, OSError) as exc:
            log.info("proxy stream from %s (%s) broken: %r", inst.name, inst.uid[:8], exc)
        finally:
            response.release()

    async def _deny(self, scope: Scope, send: Send, status: int, body: dict[str, Any]) -> None:
        if "websocket.http.response" in scope.get("extensions", {}):
            data = json.dumps(body).encode()
            await send({"type": "websocket.http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "websocket.http.response.body", "body": data})
        else:
            await send({"type": "websocket.close", "code": 1011, "reason": body.get("detail", "")[:120]})

    async def _websocket(self, scope: Scope, receive: Receive, send: Send, inst: Instance, rest: str,
                         partition: str) -> None:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        query = scope.get("query_string", b"").decode("latin-1")
        path = rest + ("?" + query if query else "")
        extra = [(k, v) for k, v in self._forward_headers(scope, inst, partition) if k not in WS_HANDSHAKE]
        offered = b",".join(v for k, v in scope["headers"] if k == b"sec-websocket-protocol")
        subprotocols = [s.strip() for s in offered.decode("latin-1").split(",") if s.strip()]
        options: dict[str, Any] = {
            "additional_headers": extra, "subprotocols": subprotocols or None,
            "max_size": self.max_frame_bytes, "open_timeout": 10, "compression": None,
            "ping_interval": None,
        }
        try:
            if inst.socket_path is not None:
                upstream = await ws_unix_connect(str(inst.socket_path), f"ws://backend{path}", **options)
            else:
                upstream = await ws_connect(f"ws://127.0.0.1:{inst.port}{path}", **options)
        except (OSError, websockets.exceptions.WebSocketException, TimeoutError) as exc:
            log.info("proxy WebSocket to %s (%s) refused: %r", inst.name, inst.uid[:8], exc)
            await self._deny(scope, send, 502, {"error": "backend-unreachable", "uid": inst.uid,
                                                "detail": f"{inst.name} refused the WebSocket: {exc}"})
            return
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
        await relay(receive, send, upstream, inst)


async def relay(receive: Receive, send: Send, upstream: ClientConnection, inst: Instance) -> None:
    """Relay frames between the ASGI WebSocket and ``upstream`` until either side closes."""
    label = uuid.uuid4().hex[:6]

    async def down_to_up() -> None:
        while True:
            message = await receive()
            inst.last_used = time.monotonic()
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
                inst.last_used = time.monotonic()
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
