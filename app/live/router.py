"""Live routes: `WS /api/v1/ws` (not in OpenAPI) and the SSE readings stream."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, WebSocket
from fastapi.responses import StreamingResponse

from app.auth.dependencies import CurrentPrincipal
from app.catalog.dependencies import DeviceForView
from app.catalog.telemetry import METRIC_LIST_PATTERN
from app.core.errors import PROBLEM_JSON
from app.core.routing import API_PREFIX
from app.core.services import ServicesDep
from app.live import socket, sse
from app.live.exceptions import BadLastEventId

# The socket carries its own authentication (first message) and limits: it stays outside
# the router-wide HTTP rate-limit dependency, which reads request headers.
socket_router = APIRouter(prefix=API_PREFIX)
router = APIRouter(prefix=f"{API_PREFIX}/devices/{{device_id}}", tags=["live"])


@socket_router.websocket("/ws")
async def live_socket(websocket: WebSocket, services: ServicesDep) -> None:
    """One socket per client; see README "Live streams" for the protocol."""
    await socket.serve(websocket, services, services.live)


_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
    },
    "required": ["type", "title", "status"],
}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": _PROBLEM_SCHEMA}},
    }


_SSE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "`text/event-stream`: `event: readings` frames whose `id` is the flush's sequence "
            'and whose `data` is `{"device_id", "readings": [{"ts", "metrics"}]}`; '
            '`event: error` (`{"code", "message"}`) ends the stream, e.g. when access is '
            "removed (`access_revoked`) or the client reads too slowly (`closed`); "
            "`: keep-alive` comments in between."
        ),
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    401: _problem("No or bad credentials"),
    404: _problem("No such device, or the caller may not see it"),
    422: _problem("Bad `metrics` or `Last-Event-ID`"),
    429: _problem("Rate limited"),
    503: _problem("A store is unavailable"),
}


@router.get(
    "/readings/stream",
    response_class=StreamingResponse,
    responses=_SSE_RESPONSES,
    summary="Follow a device's stored readings (Server-Sent Events)",
)
async def stream_readings(
    device: DeviceForView,
    principal: CurrentPrincipal,
    services: ServicesDep,
    metrics: Annotated[
        str | None,
        Query(
            pattern=METRIC_LIST_PATTERN,
            description="comma-separated metric names to keep (at most 50); all when omitted",
        ),
    ] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=45)] = None,
) -> StreamingResponse:
    """Readings as they are stored; `Last-Event-ID` resumes from the short Redis buffer."""
    names = frozenset(metrics.split(",")) if metrics else None
    if last_event_id is not None and not sse.valid_id(last_event_id):
        raise BadLastEventId("Last-Event-ID must be an event id this stream sent")
    body = sse.stream(
        services.live,
        principal=principal,
        device_id=str(device.id),
        metrics=names,
        last_event_id=last_event_id,
        queue_limit=services.settings.ws_send_queue,
        keepalive_s=services.settings.live_sse_keepalive_s,
    )
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
