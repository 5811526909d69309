"""Reads of a device's readings: latest values, history pages and downsampled aggregates."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

from bson import ObjectId
from odmantic import AIOEngine

from app.core.models import parse_object_id, utcnow
from app.readings import buckets, repository, validation
from app.readings.context import DeviceContext
from app.readings.exceptions import QueryInvalid
from app.readings.latest_cache import LatestValues
from app.readings.models import field_key, metric_name
from app.readings.schemas import (
    AggregateFunction,
    AggregateRead,
    LatestRead,
    LatestValue,
    ReadingRead,
    ReadingsPage,
)

DEFAULT_RANGE = timedelta(hours=24)
AGG_FUNCTIONS: tuple[str, ...] = get_args(AggregateFunction)


async def latest(
    engine: AIOEngine,
    *,
    device_id: str,
    metrics: Sequence[str] | None = None,
    latest_values: LatestValues | None = None,
) -> LatestRead:
    """The newest value of each metric: one document read, whatever the history size (from
    its Redis copy when there is one, see `latest_cache`)."""
    if latest_values is not None:
        doc = await latest_values.read(engine, device_id) or {}
    else:
        doc = await repository.read_latest(engine, device_id) or {}
    wanted = None if not metrics else {field_key(m) for m in metrics}
    values: dict[str, LatestValue] = {}
    for key, entry in (doc.get("m") or {}).items():
        if wanted is not None and key not in wanted:
            continue
        values[metric_name(key)] = LatestValue(
            ts=entry["ts"], value=entry["v"], suspect=bool(entry.get("suspect"))
        )
    newest = max((v.ts for v in values.values()), default=None)
    return LatestRead(device_id=device_id, ts=newest, metrics=values)


def resolve_range(
    start: datetime | None,
    end: datetime | None,
    *,
    max_span: timedelta,
    setting: str,
    default: timedelta = DEFAULT_RANGE,
) -> tuple[datetime, datetime]:
    """[start, end) in UTC; the last 24 hours by default; 422 when empty or over `max_span`
    (named by its `setting`)."""
    try:
        end_at = validation.to_utc_ms(end) if end is not None else utcnow()
        start_at = validation.to_utc_ms(start) if start is not None else end_at - default
    except (OverflowError, ValueError):
        raise QueryInvalid("start and end must be dates between years 1 and 9999") from None
    if start_at >= end_at:
        raise QueryInvalid("start must be before end")
    if end_at - start_at > max_span:
        raise QueryInvalid(
            f"the range may span at most {max_span.days} days ({setting}); ask for a shorter range",
            extra={"limit": setting},
        )
    return start_at, end_at


def _encode_cursor(doc: dict[str, Any], *, descending: bool, group_done: bool) -> str:
    ts: datetime = doc["ts"]
    fields: dict[str, Any] = {
        "t": int(ts.timestamp() * 1000),
        "i": str(doc["_id"]),
        "d": descending,
    }
    if group_done:
        # No other reading shares this time: the next page starts strictly after it (a plain
        # time range). Cursors without "w" (older ones) still work, checking ties by `_id`.
        fields["w"] = 1
    raw = json.dumps(fields, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, *, descending: bool) -> tuple[datetime, ObjectId, bool]:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        ts = datetime.fromtimestamp(int(data["t"]) / 1000, tz=UTC)
        oid = parse_object_id(str(data["i"]))
        same_order = bool(data["d"]) == descending
        group_done = bool(data.get("w"))
    except (ValueError, KeyError, TypeError, OverflowError, OSError, AttributeError):
        oid, same_order = None, False
    if oid is None or not same_order:
        raise QueryInvalid("invalid cursor (it belongs to another query or order)")
    return ts, oid, group_done


def _reading_read(doc: dict[str, Any]) -> ReadingRead:
    return ReadingRead(
        ts=doc["ts"],
        metrics={metric_name(k): v for k, v in (doc.get("m") or {}).items()},
        quality=doc.get("quality"),
        suspect=doc.get("suspect") or [],
    )


async def history(
    engine: AIOEngine,
    *,
    device_id: str,
    start: datetime | None,
    end: datetime | None,
    metrics: Sequence[str] | None,
    limit: int,
    cursor: str | None,
    descending: bool,
    max_span: timedelta,
) -> ReadingsPage:
    """One page of raw readings in a range, newest first by default, with a stable cursor."""
    start_at, end_at = resolve_range(
        start, end, max_span=max_span, setting="READINGS_HISTORY_MAX_SPAN_DAYS"
    )
    after = None if cursor is None else _decode_cursor(cursor, descending=descending)
    keys = [field_key(m) for m in metrics] if metrics else None
    docs = await repository.find_history(
        engine,
        device_id,
        start=start_at,
        end=end_at,
        keys=keys,
        after=after,
        descending=descending,
        limit=limit + 1,
    )
    page = docs[:limit]
    next_cursor = None
    if len(docs) > limit and page:
        # Rows come in time order, so a next row at another time means the page holds every
        # row at its last time.
        group_done = docs[limit]["ts"] != page[-1]["ts"]
        next_cursor = _encode_cursor(page[-1], descending=descending, group_done=group_done)
    if keys:
        wanted = set(keys)
        for doc in page:
            doc["m"] = {k: v for k, v in (doc.get("m") or {}).items() if k in wanted}
    return ReadingsPage(items=[_reading_read(d) for d in page], next_cursor=next_cursor)


async def known_metrics(engine: AIOEngine, context: DeviceContext, *, numeric: bool) -> list[str]:
    """Metrics of the product's schema, then any others the device has sent."""
    names = [m.name for m in context.telemetry.metrics if not numeric or m.type.value == "number"]
    doc = await repository.read_latest(engine, context.device_id) or {}
    for key, entry in (doc.get("m") or {}).items():
        value = entry.get("v")
        name = metric_name(key)
        if name in names:
            continue
        if numeric and (isinstance(value, bool) or not isinstance(value, int | float)):
            continue
        names.append(name)
    return names


async def aggregate(
    engine: AIOEngine,
    *,
    context: DeviceContext,
    start: datetime | None,
    end: datetime | None,
    interval: str,
    functions: Sequence[str],
    metrics: Sequence[str] | None,
    tz: str,
    fill: bool,
    max_buckets: int,
    max_cells: int,
    max_span: timedelta,
) -> AggregateRead:
    """Downsampled numeric readings per bucket, computed by the database and folded here."""
    parsed = buckets.parse_interval(interval)
    zone = buckets.parse_tz(tz)
    unknown = [f for f in functions if f not in AGG_FUNCTIONS]
    if unknown or not functions:
        raise QueryInvalid(f"agg must be a list of {', '.join(AGG_FUNCTIONS)}")
    start_at, end_at = resolve_range(
        start, end, max_span=max_span, setting="READINGS_AGGREGATE_MAX_SPAN_DAYS"
    )
    layout = buckets.plan(parsed, start=start_at, end=end_at, tz=zone, max_buckets=max_buckets)
    names = list(metrics) if metrics else await known_metrics(engine, context, numeric=True)
    if layout.bucket_count * max(1, len(names)) > max_cells:
        raise QueryInvalid(
            f"{layout.bucket_count} buckets x {len(names)} metrics is more than the "
            f"{max_cells} values one answer may hold (READINGS_AGGREGATE_MAX_CELLS); "
            "use a longer interval, a shorter range or fewer metrics",
            extra={"limit": "READINGS_AGGREGATE_MAX_CELLS"},
        )
    by_key = {field_key(n): n for n in names}
    rows = (
        await repository.aggregate_groups(
            engine,
            context.device_id,
            start=start_at,
            end=end_at,
            origin=layout.origin,
            step_s=layout.step_s,
            keys=list(by_key),
        )
        if by_key
        else []
    )
    folded = buckets.fold(rows, layout=layout, names=by_key, functions=list(functions), fill=fill)
    return AggregateRead.model_validate(
        {
            "device_id": context.device_id,
            "start": start_at,
            "end": end_at,
            "interval": interval,
            "tz": tz,
            "agg": list(dict.fromkeys(functions)),
            "metrics": names,
            "buckets": folded,
        }
    )
