"""Readings services: ingest, heartbeat, latest values, history, aggregates and CSV export."""

from __future__ import annotations

import base64
import csv
import io
import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from odmantic import AIOEngine

from app.core.config import Settings
from app.core.metrics import READINGS_INGESTED
from app.core.models import parse_object_id, utcnow
from app.readings import aggregate as buckets
from app.readings import idempotency, repository, validation
from app.readings.exceptions import IngestUnavailable, QueryInvalid, ReadingsInvalid
from app.readings.ingest import IngestBatcher
from app.readings.models import field_key, metric_name
from app.readings.repository import DeviceContext
from app.readings.schemas import (
    AggregateRead,
    HeartbeatIn,
    IngestResult,
    LatestRead,
    LatestValue,
    PresenceRead,
    ReadingRead,
    ReadingsPage,
    RejectedReading,
)

logger = logging.getLogger(__name__)

DEFAULT_RANGE = timedelta(hours=24)
AGG_FUNCTIONS = ("avg", "min", "max", "sum", "count", "first", "last")


# --- ingest --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IngestAnswer:
    """The answer to an ingest request; `replayed` when it repeats a keyed request's answer."""

    result: IngestResult
    replayed: bool = False


async def ingest(
    engine: AIOEngine,
    *,
    batcher: IngestBatcher,
    context: DeviceContext,
    body_in: bytes,
    idempotency_key: str | None,
    settings: Settings,
) -> IngestAnswer:
    """Check, store (group commit) and answer a device's readings; idempotent with a key."""
    key = None if idempotency_key is None else idempotency.check_key(idempotency_key)
    now = utcnow()
    try:
        batch = validation.check_batch(
            validation.parse_json(body_in),
            device_id=context.device_id,
            product_id=context.product_id,
            telemetry=context.telemetry,
            now=now,
            max_batch=settings.readings_max_batch,
            max_future_skew=timedelta(seconds=settings.readings_max_future_skew_s),
            retention=timedelta(days=settings.readings_retention_days),
        )
    except ReadingsInvalid:
        READINGS_INGESTED.labels("rejected").inc()
        raise
    claim = None
    if key is not None:
        claim = await idempotency.claim(
            engine,
            device_id=context.device_id,
            key=key,
            body_fingerprint=idempotency.fingerprint(body_in),
            ttl=timedelta(hours=settings.idempotency_ttl_hours),
            wait_s=settings.idempotency_wait_s,
        )
        if claim.replay is not None:
            replay = IngestResult.model_validate(claim.replay)
            READINGS_INGESTED.labels("duplicate").inc(replay.accepted)
            return IngestAnswer(result=replay, replayed=True)
    rejected = [
        RejectedReading(index=r.index, reason=r.reason, detail=r.detail)  # type: ignore[arg-type]
        for r in batch.rejected
    ]
    result = IngestResult(accepted=len(batch.docs), rejected=len(rejected), errors=rejected)
    try:
        outcome = await batcher.submit(
            batch.docs,
            context,
            key_id=None if claim is None else claim.key_id,
            response=None if claim is None else result.model_dump(mode="json"),
        )
    except IngestUnavailable:
        if claim is not None:
            await idempotency.release(engine, claim.key_id)
        raise
    if outcome.failed:
        if len(outcome.failed) == len(batch.docs):
            if claim is not None:
                await idempotency.release(engine, claim.key_id)
            raise IngestUnavailable("The readings could not be stored; retry")
        stored_failed = [
            RejectedReading(
                index=batch.indexes[i], reason="storage-error", detail="not stored; send again"
            )
            for i in outcome.failed
        ]
        errors = sorted([*rejected, *stored_failed], key=lambda r: r.index)
        result = IngestResult(
            accepted=len(batch.docs) - len(stored_failed), rejected=len(errors), errors=errors
        )
    if claim is not None and not outcome.key_recorded:
        await idempotency.complete(engine, claim.key_id, result.model_dump(mode="json"))
    READINGS_INGESTED.labels("accepted").inc(result.accepted)
    if result.rejected:
        READINGS_INGESTED.labels("rejected").inc(result.rejected)
    return IngestAnswer(result=result)


# --- presence ------------------------------------------------------------------------------------


async def heartbeat(
    engine: AIOEngine,
    *,
    device_id: str,
    heartbeat_in: HeartbeatIn,
    throttle_s: float,
    cache: repository.DeviceContextCache | None = None,
) -> PresenceRead:
    """Record that the device is alive, with its reported status and detail when given."""
    given = heartbeat_in.model_fields_set
    for _ in range(3):
        previous = await repository.read_presence(engine, device_id) or {}
        status = heartbeat_in.status if "status" in given else previous.get("reported_status")
        detail = heartbeat_in.detail if "detail" in given else previous.get("detail")
        detail = detail or {}
        now = utcnow()
        last_seen = previous.get("last_seen_at")
        unchanged = (
            previous
            and status == previous.get("reported_status")
            and detail == (previous.get("detail") or {})
        )
        if (
            unchanged
            and isinstance(last_seen, datetime)
            and now - last_seen < timedelta(seconds=throttle_s)
        ):
            return _presence_read(device_id, previous)
        presence = repository.presence_doc(now=now, reported_status=status, detail=detail)
        if await repository.replace_presence(
            engine, device_id, presence=presence, expected_status=previous.get("reported_status")
        ):
            if cache is not None:
                cache.forget(device_id)
            return _presence_read(device_id, presence)
    raise IngestUnavailable("The heartbeat conflicted with concurrent updates; retry")


def _presence_read(device_id: str, presence: dict[str, Any]) -> PresenceRead:
    return PresenceRead(
        device_id=device_id,
        last_seen_at=presence.get("last_seen_at"),
        reported_status=presence.get("reported_status"),
        detail=presence.get("detail") or {},
    )


# --- latest values -------------------------------------------------------------------------------


async def latest(
    engine: AIOEngine, *, device_id: str, metrics: Sequence[str] | None = None
) -> LatestRead:
    """The newest value of each metric: one document read, whatever the history size."""
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


# --- history -------------------------------------------------------------------------------------


def resolve_range(
    start: datetime | None, end: datetime | None, *, default: timedelta = DEFAULT_RANGE
) -> tuple[datetime, datetime]:
    """[start, end) in UTC; the last 24 hours by default; 422 when empty."""
    end_at = validation.to_utc_ms(end) if end is not None else utcnow()
    start_at = validation.to_utc_ms(start) if start is not None else end_at - default
    if start_at >= end_at:
        raise QueryInvalid("start must be before end")
    return start_at, end_at


def _encode_cursor(doc: dict[str, Any], *, descending: bool) -> str:
    ts: datetime = doc["ts"]
    raw = json.dumps(
        {"t": int(ts.timestamp() * 1000), "i": str(doc["_id"]), "d": descending},
        separators=(",", ":"),
    )
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, *, descending: bool) -> tuple[datetime, ObjectId]:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        ts = datetime.fromtimestamp(int(data["t"]) / 1000, tz=UTC)
        oid = parse_object_id(str(data["i"]))
        same_order = bool(data["d"]) == descending
    except (ValueError, KeyError, TypeError, OverflowError):
        oid, same_order = None, False
    if oid is None or not same_order:
        raise QueryInvalid("invalid cursor (it belongs to another query or order)")
    return ts, oid


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
) -> ReadingsPage:
    """One page of raw readings in a range, newest first by default, with a stable cursor."""
    start_at, end_at = resolve_range(start, end)
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
    next_cursor = (
        _encode_cursor(page[-1], descending=descending) if len(docs) > limit and page else None
    )
    if keys:
        wanted = set(keys)
        for doc in page:
            doc["m"] = {k: v for k, v in (doc.get("m") or {}).items() if k in wanted}
    return ReadingsPage(items=[_reading_read(d) for d in page], next_cursor=next_cursor)


# --- aggregates ----------------------------------------------------------------------------------


async def _known_metrics(engine: AIOEngine, context: DeviceContext, *, numeric: bool) -> list[str]:
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
) -> AggregateRead:
    """Downsampled numeric readings per bucket, computed by the database and folded here."""
    parsed = buckets.parse_interval(interval)
    zone = buckets.parse_tz(tz)
    unknown = [f for f in functions if f not in AGG_FUNCTIONS]
    if unknown or not functions:
        raise QueryInvalid(f"agg must be a list of {', '.join(AGG_FUNCTIONS)}")
    start_at, end_at = resolve_range(start, end)
    layout = buckets.plan(parsed, start=start_at, end=end_at, tz=zone, max_buckets=max_buckets)
    names = list(metrics) if metrics else await _known_metrics(engine, context, numeric=True)
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


# --- export --------------------------------------------------------------------------------------


async def export_columns(
    engine: AIOEngine, *, context: DeviceContext, metrics: Sequence[str] | None
) -> list[str]:
    """The metric columns of an export: the ones asked for, or every known metric."""
    return list(metrics) if metrics else await _known_metrics(engine, context, numeric=False)


async def export_csv(
    engine: AIOEngine,
    *,
    device_id: str,
    start: datetime,
    end: datetime,
    columns: Sequence[str],
    rows_per_chunk: int = 500,
) -> AsyncIterator[str]:
    """CSV text chunks (header first): one row per reading, one column per metric."""
    keys = [field_key(c) for c in columns]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["ts", *columns, "quality"])
    pending = 1
    async for doc in repository.iter_readings(engine, device_id, start=start, end=end):
        values = doc.get("m") or {}
        ts: datetime = doc["ts"]
        writer.writerow(
            [
                ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                *(_csv_value(values.get(k)) for k in keys),
                doc.get("quality") or "",
            ]
        )
        pending += 1
        if pending >= rows_per_chunk:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    if pending:
        yield buffer.getvalue()


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return repr(value)
    return value
