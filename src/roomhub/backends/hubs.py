"""In a cluster, a partition's instances run on one hub: the holder of its lease.

The lease is ``backends:<partition>`` (:func:`partition_key`), taken by the first hub a request
or a socket of the partition reaches and kept while the partition lives there (a socket, an
instance or an install under way: :meth:`Partitions.held <roomhub.backends.partition.Partitions.held>`).
Everything of a partition that reaches another hub goes to the holder:

- its socket (``/api/backends/ws?partition=P``): relayed by the core
  (:class:`~roomhub.core.relay.RoomRelay`), like any room's;
- the proxy's HTTP requests (``/backends/<name>/<range>/...``): forwarded by
  :mod:`.exchange` over a keep-alive pool to the holder's address, streamed both ways, with
  the cluster's shared secret, the lease key and the client's address
  (:data:`~roomhub.core.relay.RELAY_HEADER`, ``KEY_HEADER``, ``PEER_HEADER``);
- the proxy's WebSockets: relayed frame by frame to the holder's proxy (:mod:`.proxy`);
- ``POST /api/backends/install`` and ``/api/backends/partitions/<P>``: forwarded with httpx
  (small JSON bodies) and answered with the holder's status and body (:mod:`.endpoint`).

The holder serves a forwarded request as it would the client's (``X-Forwarded-For`` names the
client, the hub-to-hub headers never reach a backend) and never forwards it again: when it no
longer holds the lease it takes it if free, else answers 409 ``partition-moved`` (the lease moved
while the request was on its way: the client sends it again). Failover: when the holder dies,
its instances die with it; requests wait for its lease to lapse (the lease time) and the next
holder starts the backends again on demand (``on_demand``) or after an install.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response

from ..core.relay import KEY_HEADER, PEER_HEADER, RELAY_HEADER, RELAY_HEADERS, HolderGone, RoomRelay
from . import protocol as p
from .partition import Partitions
from .upstream import UpstreamPool

log = logging.getLogger("roomhub.backends.hubs")

LOOK = "look"
""":meth:`PartitionHubs.cached`'s answer when the holder must be asked for (:meth:`PartitionHubs.route`)."""


def partition_key(partition: str) -> str:
    """The lease key of ``partition`` (``backends:<partition>``)."""
    return f"backends:{partition}"


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` (or ``"[v6]:port"``) -> ``(host, port)``; raises ``ValueError``."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class PartitionHubs:
    """Which hub holds each partition, and what a request forwarded there carries (see the module).

    ``relay``: the hub's :class:`~roomhub.core.relay.RoomRelay`. A holder's address is kept for
    one lease time, or until a request to it failed or was refused (:meth:`moved`)."""

    def __init__(self, relay: RoomRelay, partitions: Partitions) -> None:
        self.relay = relay
        self.partitions = partitions
        self.lease_seconds = relay.lease_seconds
        self.heartbeat = relay.heartbeat
        self._known: dict[str, tuple[str, float]] = {}  # partition -> (holder address, until: loop time)
        self._pools: dict[str, UpstreamPool] = {}  # holder address -> keep-alive connections
        self._http: httpx.AsyncClient | None = None  # forwarded installs and partition requests

    async def close(self) -> None:
        """Close the connections to other hubs."""
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # -- where --------------------------------------------------------------------------

    def cached(self, scope: dict[str, Any], partition: str) -> str | None:
        """Where a request for ``partition`` goes, from what this hub knows now: None (here: it
        holds the lease), a holder's ``host:port``, or :data:`LOOK` (ask with :meth:`route`).
        Raises ``BadRequest`` 403 for a hub-to-hub request without the shared secret."""
        relayed = self._relayed(scope)
        if self.relay.cluster.holds(partition_key(partition)):
            return None
        if relayed:
            return LOOK
        known = self._known.get(partition)
        if known is not None and known[1] > asyncio.get_running_loop().time():
            return known[0]
        return LOOK

    async def route(self, scope: dict[str, Any], partition: str) -> str | None:
        """Where a request for ``partition`` goes: None (here; the lease is taken if it was
        free), else the holder's ``host:port``. Waits at most two lease times for a gone
        holder's lease to lapse. Raises ``BadRequest``: 403 ``bad-relay-credentials``, 409
        ``partition-moved`` (a forwarded request whose partition another hub holds now), 503
        ``cluster-unavailable`` (Redis unreachable, no holder in time)."""
        relayed = self._relayed(scope)
        key = partition_key(partition)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2 * self.lease_seconds + 1
        while True:
            try:
                address = await self.relay.locate(key, self.partitions.held(partition))
            except HolderGone:
                if loop.time() > deadline:
                    raise p.BadRequest("cluster-unavailable", f"the hub of partition {partition!r} left "
                                       "and its lease did not lapse in time", status=503) from None
                await asyncio.sleep(self.relay.retry_after(key))
                continue
            except Exception as exc:
                log.warning("partition %s: the cluster cannot say which hub holds it: %s", partition, exc)
                raise p.BadRequest("cluster-unavailable", "the cluster cannot say which hub holds "
                                   f"partition {partition!r}: try again later", status=503) from None
            break
        if address is None:
            return None
        if relayed:  # forwarded once already: never again
            raise p.BadRequest("partition-moved", f"partition {partition!r} moved to another hub while "
                               "the request was forwarded: send it again", status=409)
        self._known[partition] = (address, loop.time() + self.lease_seconds)
        return address

    async def resolve(self, scope: dict[str, Any], partition: str) -> str | None:
        """:meth:`cached`, else :meth:`route`: None (here) or the holder's ``host:port``."""
        where = self.cached(scope, partition)
        return await self.route(scope, partition) if where == LOOK else where

    def moved(self, partition: str, address: str) -> None:
        """A request forwarded to ``address`` for ``partition`` was refused there (409): ask
        again next time."""
        known = self._known.get(partition)
        if known is not None and known[0] == address:
            del self._known[partition]

    def unreachable(self, address: str) -> None:
        """The hub at ``address`` refused a connection: forget it."""
        for partition, (known, _) in list(self._known.items()):
            if known == address:
                del self._known[partition]
        pool = self._pools.pop(address, None)
        if pool is not None:
            pool.close()

    async def forward(self, request: Request, partition: str, body: bytes) -> Response | None:
        """A small API request about ``partition`` (``body``: read already) answered by its
        holder, with the holder's status, ``content-type`` and body; None when this hub holds
        it (serve it here). Waits for a gone holder's lease to lapse, as :meth:`route`; raises
        ``BadRequest`` as :meth:`route` does, and 502 ``hub-unreachable`` when the holder stays
        unreachable."""
        scope = request.scope
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2 * self.lease_seconds + 1
        kept = [(k, v) for k, v in scope["headers"]
                if k not in p.NOT_FORWARDED and k not in RELAY_HEADERS and k != b"content-length"]
        if self._http is None:  # no read timeout: an install waits for its builds
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(None, connect=self.lease_seconds))
        while (address := await self.resolve(scope, partition)) is not None:
            query = scope["query_string"].decode("latin-1")
            url = f"http://{address}{scope['path']}" + (f"?{query}" if query else "")
            try:
                answer = await self._http.request(request.method, url, content=body,
                                                  headers=kept + self.relay_headers(scope, partition))
            except httpx.TransportError as exc:
                self.unreachable(address)
                if loop.time() > deadline:
                    raise p.BadRequest("hub-unreachable", f"the hub of partition {partition!r} did not "
                                       f"answer: {exc!r}", status=502) from None
                log.info("%s %s: the partition's hub %s did not answer (%r): asking again",
                         request.method, scope["path"], address, exc)
                await asyncio.sleep(self.relay.retry_after(partition_key(partition)))
                continue
            if answer.status_code == 409:
                self.moved(partition, address)
            media = answer.headers.get("content-type", "application/json")
            return Response(answer.content, status_code=answer.status_code, media_type=media)
        return None

    # -- what a forwarded request carries ----------------------------------------------------

    def pool(self, address: str) -> UpstreamPool:
        """Keep-alive connections to the hub at ``address`` (``host:port``)."""
        pool = self._pools.get(address)
        if pool is None:
            host, port = split_address(address)
            pool = self._pools[address] = UpstreamPool(None, port, f"hub {address}", host=host)
        return pool

    def relay_headers(self, scope: dict[str, Any], partition: str) -> list[tuple[bytes, bytes]]:
        """The hub-to-hub headers of a request for ``partition`` forwarded to its holder."""
        client = scope.get("client") or ("", 0)
        return [(p.PARTITION_HEADER.encode(), partition.encode()),  # the holder finds the same one
                (RELAY_HEADER.encode(), self.relay.cluster.relay_secret.encode()),
                (KEY_HEADER.encode(), partition_key(partition).encode()),
                (PEER_HEADER.encode(), f"{client[0]}:{client[1]}".encode())]

    def _relayed(self, scope: dict[str, Any]) -> bool:
        """Whether ``scope`` is a hub-to-hub request (then its ``client`` becomes the client the
        relaying hub named, so ``X-Forwarded-For`` and the logs name it). Raises ``BadRequest``
        403 when its secret is wrong."""
        authenticated = self.relay.authenticated(scope)
        if authenticated is None:
            return False
        if not authenticated:
            raise p.BadRequest("bad-relay-credentials", "bad relay credentials", status=403)
        peer = self.relay.relayed_header(scope, PEER_HEADER)
        if peer and not scope.get("relayed"):
            scope["relayed"] = True
            host, _, port = peer.rpartition(":")
            scope["client"] = (host, int(port) if port.isdigit() else 0)
        return True
