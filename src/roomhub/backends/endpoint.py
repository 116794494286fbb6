"""The backends face's endpoints: the proxy mount, the partition socket and the REST API.

Routes (errors are JSON ``{"error": code, "detail": message, ...}`` with a 4xx/5xx status):

- ``/backends/<name>/<semver>/<path>``: the proxy (:mod:`~roomhub.backends.proxy`);
- ``WS /api/backends/ws?partition=P&owner=T``: the partition socket (a
  bad partition name gets HTTP 400 before the handshake); with
  ``?monitor=1`` the events of every partition (the dashboard);
- ``POST /api/backends/install``: W3Nest's install inputs; headers
  ``X-Backends-Partition`` (when the body names none), ``X-Backends-Owner``
  (the tab's id: its backends stop when its socket has gone),
  ``X-Install-Id``; answers ``{partitionId, installId, backends: [...]}``; a body
  that is not JSON (or nests deeper than ``server.limits.max_json_depth``) gets 400;
- ``GET /api/backends/packages``, ``GET /api/backends/builds``;
- ``GET /api/backends/partitions``, ``GET|DELETE /api/backends/partitions/<id>``;
- ``GET /api/backends/instances``, ``GET|DELETE /api/backends/instances/<uid>``,
  ``GET /api/backends/instances/<uid>/logs`` (``{uid, server_outputs, install_outputs}``);
- ``GET /api/backends/dashboard``: the dashboard page.
"""

from __future__ import annotations

import logging
import re
import uuid
from pathlib import Path
from typing import Any, Protocol

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import Scope

from .. import jsonlimits
from ..core.context import FaceContext
from ..core.face import FaceSocketEndpoint, serve_room_socket
from ..core.relay import Placement
from ..core.rooms import Room, validate_room_name
from ..transport.callback_websocket import CallbackWebSocket
from ..transport.traffic import Frame
from . import protocol as p
from .builds import Builder
from .hubs import partition_key
from .install import Installer
from .packages import Catalog
from .partition import PartitionRoom, Partitions
from .proxy import BackendProxy

log = logging.getLogger("roomhub.backends")


class BackendsFace(Protocol):
    """What the backends endpoints use of their face (:class:`roomhub.backends.BackendsFace`)."""

    context: FaceContext
    catalog: Catalog
    builder: Builder
    installer: Installer
    partitions: Partitions
    proxy: BackendProxy

    def note_server(self, scope: Scope) -> None:
        """Learn the hub's address from a request (the configured port may be 0)."""
        ...

DASHBOARD = Path(__file__).resolve().parent.parent / "demo" / "dashboard.html"
OWNER_RE = re.compile(r"^[A-Za-z0-9._~:@+=-]{1,128}$")
MAX_INSTALL_BODY = 1024 * 1024


def error(exc: p.BadRequest) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


def not_found(kind: str, what: str) -> JSONResponse:
    return JSONResponse({"error": f"unknown-{kind}", "detail": f"no {kind} {what!r}"}, status_code=404)


def checked_partition(value: str | None) -> str:
    try:
        return validate_room_name(value or p.DEFAULT_PARTITION)
    except ValueError as exc:
        raise p.BadRequest("bad-partition", f"partition {value!r}: {exc}") from None


def checked_owner(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not OWNER_RE.match(value):
        raise p.BadRequest("bad-owner", "owner: 1 to 128 letters, digits or ._~:@+=-")
    return value


async def ignore_frame(room: Room, conn: CallbackWebSocket, frame: Frame) -> None:
    """The partition socket is server-to-client; a client frame is answered with an error."""
    conn.send(p.encode(p.event("Error", error="unexpected-frame",
                               detail="this socket only carries events from the hub")))


class PartitionSocket(FaceSocketEndpoint):
    """``WS /api/backends/ws?partition=P&owner=T`` (``?monitor=1``: every partition's events)."""

    def __init__(self, context: FaceContext, partitions: Partitions) -> None:
        super().__init__(context, "/api/backends/ws", exact=True)
        self.partitions = partitions

    def check(self, sock: CallbackWebSocket, scope: dict[str, Any]) -> tuple[int, str] | None:
        params = QueryParams(scope["query_string"])
        if params.get("monitor"):
            return None
        try:
            checked_partition(params.get("partition"))
            checked_owner(params.get("owner"))
        except p.BadRequest as exc:
            return exc.status, exc.detail
        return None

    async def placement(self, sock: CallbackWebSocket, scope: dict[str, Any]) -> Placement | None:
        """A partition is held by one hub of a cluster; the monitor (every partition's events of
        this hub) is each hub's own."""
        params = QueryParams(scope["query_string"])
        if params.get("monitor"):
            return None
        partition = checked_partition(params.get("partition"))
        return Placement(partition_key(partition), self.partitions.held(partition))

    async def serve(self, sock: CallbackWebSocket, scope: dict[str, Any]) -> None:
        params = QueryParams(scope["query_string"])
        if params.get("monitor"):
            await serve_room_socket(sock, self.context, self.partitions.monitor, "all", ignore_frame)
            return
        sock.state = checked_owner(params.get("owner"))  # read by partition.owner_of
        await serve_room_socket(sock, self.context, self.partitions.registry,
                                checked_partition(params.get("partition")), ignore_frame,
                                left=PartitionRoom.forget)


def backend_routes(face: BackendsFace) -> list[BaseRoute]:
    context = face.context
    partitions = face.partitions

    async def install(request: Request) -> JSONResponse:
        face.note_server(request.scope)
        install_id = request.headers.get(p.INSTALL_ID_HEADER) or f"install-{uuid.uuid4().hex[:12]}"
        partition = request.headers.get(p.PARTITION_HEADER)
        try:
            if int(request.headers.get("content-length") or 0) > MAX_INSTALL_BODY:
                raise p.BadRequest("bad-install-request", "the body is larger than 1 MiB", status=413)
            raw = await request.body()
            try:
                body = jsonlimits.loads(raw, context.config.server.limits.max_json_depth)
            except ValueError as exc:
                raise p.BadRequest("bad-install-request", f"the body is not JSON: {exc}") from None
            parsed = p.parse_install(body)
            partition = checked_partition(parsed.partition or partition)
            owner = checked_owner(request.headers.get(p.OWNER_HEADER))
            if face.hubs is not None:  # a cluster: installed on the hub holding the partition
                forwarded = await face.hubs.forward(request, partition, raw)
                if forwarded is not None:
                    return forwarded
            result = await face.installer.install(parsed, partition, owner, install_id)
        except p.BadRequest as exc:
            log.info("install %s into %s refused: %s", install_id, partition, exc.detail)
            if partition and exc.error in ("bad-install-request", "bad-query", "bad-version-range",
                                           "bad-owner"):
                partitions.publish(str(partition), p.event("InstallFailed", installId=install_id,
                                                           error=exc.error, detail=exc.detail))
            return JSONResponse({**exc.body(), "installId": install_id}, status_code=exc.status)
        return JSONResponse(result)

    async def packages(request: Request) -> JSONResponse:
        found = face.catalog.scan()
        return JSONResponse([pkg.describe() for versions in found.values() for pkg in versions.values()])

    async def builds(request: Request) -> JSONResponse:
        return JSONResponse(face.builder.describe())

    async def list_partitions(request: Request) -> JSONResponse:
        return JSONResponse([partitions.describe(name) for name in partitions.names()])

    async def one_partition(request: Request) -> Response:
        pid = request.path_params["pid"]
        if face.hubs is not None:  # a cluster: the partition's instances are on its holder
            try:
                forwarded = await face.hubs.forward(request, checked_partition(pid), b"")
            except p.BadRequest as exc:
                return JSONResponse(exc.body(), status_code=exc.status)
            if forwarded is not None:
                return forwarded
        if not partitions.exists(pid):
            return not_found("partition", pid)
        if request.method == "DELETE":
            return JSONResponse({"partitionId": pid, "uids": await partitions.terminate(pid)})
        return JSONResponse(partitions.describe(pid))

    async def list_instances(request: Request) -> JSONResponse:
        wanted = request.query_params.get("partition")
        insts = [i for i in partitions.instances.values() if wanted is None or i.partition == wanted]
        return JSONResponse([i.describe() for i in insts])

    async def one_instance(request: Request) -> JSONResponse:
        uid = request.path_params["uid"]
        inst = partitions.instances.get(uid)
        if inst is None:
            return not_found("instance", uid)
        if request.method == "DELETE":
            uids = await partitions.stop([inst], "terminated through the API")
            return JSONResponse({"uids": uids, "instance": inst.describe()})
        return JSONResponse(inst.describe())

    async def logs(request: Request) -> JSONResponse:
        uid = request.path_params["uid"]
        inst = partitions.instances.get(uid)
        if inst is None:
            return not_found("instance", uid)
        body: dict[str, Any] = {"uid": uid, "server_outputs": list(inst.logs),
                                "install_outputs": face.builder.log_of(inst.build.fingerprint)}
        return JSONResponse(body)

    async def dashboard(request: Request) -> FileResponse:
        return FileResponse(DASHBOARD, media_type="text/html")

    api = "/api/backends"
    return [
        Mount("/backends", app=face.proxy),
        Route(f"{api}/install", install, methods=["POST"]),
        Route(f"{api}/packages", packages, methods=["GET"]),
        Route(f"{api}/builds", builds, methods=["GET"]),
        Route(f"{api}/partitions", list_partitions, methods=["GET"]),
        Route(f"{api}/partitions/{{pid}}", one_partition, methods=["GET", "DELETE"]),
        Route(f"{api}/instances", list_instances, methods=["GET"]),
        Route(f"{api}/instances/{{uid}}", one_instance, methods=["GET", "DELETE"]),
        Route(f"{api}/instances/{{uid}}/logs", logs, methods=["GET"]),
        Route(f"{api}/dashboard", dashboard, methods=["GET"]),
    ]
