"""Readings routes: devices post readings and heartbeats; users read history and aggregates."""

from __future__ import annotations

import zoneinfo
from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime

from app.catalog.exceptions import DeviceNotFound
from app.catalog.telemetry import METRIC_LIST_PATTERN, METRIC_NAME
from app.core import idempotency
from app.core.openapi import raises, raw_body
from app.core.responses import ModelResponse
from app.core.routing import API_PREFIX
from app.core.services import ServicesDep
from app.ratelimit.dependencies import limits_itself
from app.readings import export, ingest, queries
from app.readings.dependencies import IngestDevice, OwnDevice, ReadableDevice, store_readings
from app.readings.exceptions import (
    IdempotencyInProgress,
    IngestUnavailable,
    MalformedReadings,
    QueryInvalid,
    ReadingsInvalid,
)
from app.readings.schemas import (
    AggregateRead,
    HeartbeatIn,
    IngestResult,
    LatestRead,
    PresenceRead,
    ReadingIn,
    ReadingsBatchIn,
    ReadingsPage,
)

router = APIRouter(prefix=f"{API_PREFIX}/devices/{{device_id}}", tags=["readings"])

_INGEST_EXAMPLES = {
    "one": {
        "summary": "One reading",
        "value": {"ts": "2026-03-01T12:00:00Z", "metrics": {"temperature": 22.5, "door": False}},
    },
    "batch": {
        "summary": "A batch",
        "value": {
            "readings": [
                {"ts": "2026-03-01T12:00:00Z", "metrics": {"temperature": 22.5}},
                {"ts": "2026-03-01T12:01:00Z", "metrics": {"temperature": 22.7, "rssi": -61}},
            ]
        },
    },
}
TIME_ZONES = sorted(zoneinfo.available_timezones())
_AGG = "(avg|min|max|sum|count|first|last)"
# Comma-separated metric names (up to 50), as `_names` reads them.
MetricsQuery = Annotated[
    str | None,
    Query(
        pattern=METRIC_LIST_PATTERN,
        description="comma-separated metric names (at most 50); all metrics when omitted",
    ),
]
Instant = Annotated[AwareDatetime | None, Query(description="RFC 3339 with a time zone")]


def _names(value: str | None, *, what: str = "metrics") -> list[str] | None:
    if not value:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    if len(names) > 50 or not all(METRIC_NAME.fullmatch(n) for n in names):
        raise QueryInvalid(f"{what} must be a comma-separated list of up to 50 metric names")
    return names


@router.post(
    "/readings",
    status_code=202,
    response_model=IngestResult,
    summary="Post one reading or a batch (device key)",
)
@raw_body(ReadingIn, ReadingsBatchIn, examples=_INGEST_EXAMPLES)
@raises(
    ReadingsInvalid,
    MalformedReadings,
    IdempotencyInProgress,
    IngestUnavailable,
)
@limits_itself
async def post_readings(
    request: Request,
    response: Response,
    device: IngestDevice,
    services: ServicesDep,
    idempotency_key: Annotated[
        str | None,
        idempotency.key_header(
            "a retry with the same key and body is answered without storing again"
        ),
    ] = None,
) -> IngestResult:
    """Store readings (answered once written); a retry with the same Idempotency-Key is a no-op."""
    answer = await store_readings(request, services, device=device, idempotency_key=idempotency_key)
    if answer.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return answer.result


@router.post(
    "/heartbeat", response_model=PresenceRead, summary="Say the device is alive (device key)"
)
@raises(IngestUnavailable, DeviceNotFound)
async def post_heartbeat(
    device: OwnDevice, services: ServicesDep, heartbeat_in: HeartbeatIn | None = None
) -> PresenceRead:
    """Update last_seen_at and, when given, the device's reported status and detail."""
    answer = await ingest.heartbeat(
        services.engine,
        device_id=device.device_id,
        heartbeat_in=heartbeat_in or HeartbeatIn(),
        settings=services.settings,
        cache=services.device_contexts,
    )
    await services.on_devices_changed(device_ids=[device.device_id])
    return answer


@router.get("/readings", response_model=ReadingsPage, summary="Raw readings in a time range")
@raises(QueryInvalid)
async def list_readings(
    device: ReadableDevice,
    services: ServicesDep,
    start: Instant = None,
    end: Instant = None,
    metrics: MetricsQuery = None,
    limit: Annotated[
        int,
        Query(ge=1, json_schema_extra={"x-settings": {"maximum": "readings_history_max_limit"}}),
    ] = 100,
    cursor: Annotated[
        str | None,
        Query(
            pattern=r"^[A-Za-z0-9_-]{1,200}$",
            description="`next_cursor` of the previous page of the same query",
        ),
    ] = None,
    order: Literal["asc", "desc"] = "desc",
) -> ModelResponse:
    """Readings of [start, end) (default: the last 24 hours), newest first unless order=asc."""
    max_limit = services.settings.readings_history_max_limit
    if limit > max_limit:
        raise QueryInvalid(f"limit may be at most {max_limit}")
    page = await queries.history(
        services.engine,
        device_id=device.device_id,
        start=start,
        end=end,
        metrics=_names(metrics),
        limit=limit,
        cursor=cursor,
        descending=order == "desc",
        max_span=timedelta(days=services.settings.readings_history_max_span_days),
    )
    return ModelResponse(page)  # built and validated by the query: encoded once


@router.get("/readings/latest", response_model=LatestRead, summary="Latest value of each metric")
async def latest_readings(
    device: ReadableDevice, services: ServicesDep, metrics: MetricsQuery = None
) -> LatestRead:
    """The newest value and time of every metric (one small document, whatever the history)."""
    return await queries.latest(
        services.engine,
        device_id=device.device_id,
        metrics=_names(metrics),
        latest_values=services.latest_values,
    )


@router.get("/readings/aggregate", response_model=AggregateRead, summary="Downsampled readings")
@raises(QueryInvalid)
async def aggregate_readings(
    device: ReadableDevice,
    services: ServicesDep,
    start: Instant = None,
    end: Instant = None,
    interval: Annotated[
        str, Query(pattern=r"^[1-9][0-9]{0,5}(s|m|h|d|w|mo)$", description="e.g. 5m, 1h, 1d, 1mo")
    ] = "1h",
    agg: Annotated[
        str, Query(pattern=f"^{_AGG}(,{_AGG}){{0,6}}$", description="comma-separated functions")
    ] = "avg",
    metrics: MetricsQuery = None,
    tz: Annotated[
        str,
        Query(
            max_length=64,
            json_schema_extra={"enum": TIME_ZONES},
            description="IANA time zone of calendar buckets (days and longer)",
        ),
    ] = "UTC",
    fill: Literal["none", "null"] = "none",
) -> ModelResponse:
    """Per bucket of `interval` (1m, 15m, 1h, 1d, 1w, 1mo ...; days and longer start at local
    midnight in `tz`), the functions of `agg` (avg, min, max, sum, count, first, last)."""
    answer = await queries.aggregate(
        services.engine,
        context=device,
        start=start,
        end=end,
        interval=interval,
        functions=[f.strip() for f in agg.split(",") if f.strip()],
        metrics=_names(metrics),
        tz=tz,
        fill=fill == "null",
        max_buckets=services.settings.readings_aggregate_max_buckets,
        max_cells=services.settings.readings_aggregate_max_cells,
        max_span=timedelta(days=services.settings.readings_aggregate_max_span_days),
    )
    return ModelResponse(answer)  # built and validated by the query: encoded once


@router.get(
    "/readings/export",
    response_class=StreamingResponse,
    response_model=None,
    responses={200: {"content": {"text/csv": {}}, "description": "CSV, one column per metric"}},
    summary="Export readings as CSV",
)
@raises(QueryInvalid)
async def export_readings(
    device: ReadableDevice,
    services: ServicesDep,
    start: Instant = None,
    end: Instant = None,
    metrics: MetricsQuery = None,
    format: Literal["csv"] = "csv",  # noqa: A002 - the public query parameter's name
) -> StreamingResponse:
    """Stream the readings of [start, end) (default: the last 24 hours) in time order."""
    start_at, end_at = queries.resolve_range(
        start,
        end,
        max_span=timedelta(days=services.settings.readings_export_max_span_days),
        setting="READINGS_EXPORT_MAX_SPAN_DAYS",
    )
    columns = await export.columns(services.engine, context=device, metrics=_names(metrics))
    filename = f"readings-{device.device_id}-{start_at:%Y%m%dT%H%M%SZ}.{format}"
    return StreamingResponse(
        export.stream_csv(
            services.engine,
            device_id=device.device_id,
            start=start_at,
            end=end_at,
            columns=columns,
        ),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
