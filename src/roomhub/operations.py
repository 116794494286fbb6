"""What an operator uses: ``/metrics`` (Prometheus), ``/api/ready`` (readiness), the admin page
``/admin`` with its ``GET /api/admin`` and ``POST /api/admin/close``. All of them read the hub's
:class:`~roomhub.core.metrics.HubMetrics` and the faces' :meth:`~roomhub.core.face.Face.overview`:
nothing here knows a face."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field
from starlette.responses import FileResponse, JSONResponse, Response

from .core.metrics import CONTENT_TYPE
from .hub import Hub

ADMIN_PAGE = Path(__file__).parent / "web" / "admin" / "index.html"


class CloseRequest(BaseModel):
    """``POST /api/admin/close``: the room ``room`` of the registry ``namespace`` (as listed by
    ``GET /api/admin``: a page's path, ``yjs``, ``widgets``, ``backends``...)."""

    namespace: str = Field(min_length=1, max_length=256)
    room: str = Field(min_length=1, max_length=256)


def admin_state(hub: Hub) -> dict[str, Any]:
    """What ``GET /api/admin`` answers: the hub (id, uptime in seconds), totals, each face's
    traffic counters, ``room_count``, ``members`` and :meth:`~roomhub.core.face.Face.overview`
    (``rooms``: the list), and the sampled history
    (time, connections, messages per second, mean request latency and event loop lag in
    seconds) of the last minutes."""
    metrics = hub.metrics
    rooms = metrics.rooms()
    faces: dict[str, Any] = {}
    for face in hub.faces:
        traffic = metrics.traffic(face.name)
        count, members = rooms.get(face.name, (0, 0))
        faces[face.name] = {
            "connections": traffic.open,
            "room_count": count,
            "members": members,
            "messages_received": traffic.messages_received,
            "messages_sent": traffic.messages_sent,
            "bytes_received": traffic.bytes_received,
            "bytes_sent": traffic.bytes_sent,
            "closes": {str(code): n for code, n in sorted(traffic.closes.items())},
            **face.overview(),
        }
    last = metrics.history[-1] if metrics.history else {}
    return {
        "hub": {"id": hub.id, "uptime": time.time() - hub.started_at,
                "faces": [f.name for f in hub.faces]},
        "totals": {
            "connections": metrics.connections(),
            "rooms": sum(count for count, _ in rooms.values()),
            "messages_per_second": last.get("messages_per_second", 0.0),
            "request_latency_seconds": last.get("request_latency_seconds", 0.0),
            "loop_lag_seconds": metrics.loop_lag,
        },
        "faces": faces,
        "history": list(metrics.history),
    }


def operations_router(hub: Hub) -> APIRouter:
    """The routes of this module (the door applies the token rule: ``/api/ready`` is public like
    ``/api/health``, ``/metrics`` when ``server.metrics_public``)."""
    router = APIRouter()

    @router.get("/metrics", include_in_schema=True,
                summary="Prometheus metrics, text exposition format 0.0.4")
    async def metrics() -> Response:
        return Response(hub.metrics.exposition(), media_type=CONTENT_TYPE)

    @router.get("/api/ready", summary="Readiness: 200 when the store answers and the runtimes are usable, "
                                      "else 503 with the reasons (no auth needed)")
    async def ready() -> JSONResponse:
        reasons = await hub.ready()
        if reasons:
            return JSONResponse({"status": "unavailable", "reasons": reasons}, status_code=503)
        return JSONResponse({"status": "ready", "hub": hub.id})

    @router.get("/api/admin", summary="The admin page's view of the hub: rooms per face, sessions, "
                                      "partitions, traffic and the last minutes' history")
    async def admin() -> dict[str, Any]:
        return admin_state(hub)

    @router.post("/api/admin/close", summary="Close a room's clients and tear it down")
    async def close(request: CloseRequest) -> dict[str, Any]:
        face = await hub.close_room(request.namespace, request.room)
        if face is not None:
            return {"closed": request.room, "namespace": request.namespace, "face": face.name}
        raise HTTPException(404, f"no room {request.room!r} in namespace {request.namespace!r}")

    @router.get("/admin", include_in_schema=False)
    async def admin_page() -> FileResponse:
        return FileResponse(ADMIN_PAGE, headers={"Cache-Control": "no-cache"})

    return router
