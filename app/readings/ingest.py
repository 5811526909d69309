"""Device side: check readings, store them by group commit, answer once written; heartbeats.

A retry with the same `Idempotency-Key` stores nothing and gets the first answer
(`app.readings.idempotency`); the batcher (`app.readings.batcher`) answers only after the
readings are written, so every 202 is durable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from odmantic import AIOEngine

from app.catalog import presence
from app.core.config import Settings
from app.core.idempotency import check_key
from app.core.metrics import READINGS_INGESTED
from app.core.models import utcnow
from app.readings import idempotency, metric_names, repository, validation
from app.readings.batcher import IngestBatcher
from app.readings.context import DeviceContext, DeviceContextCache
from app.readings.exceptions import IngestOutcomeUnknown, IngestUnavailable, ReadingsInvalid
from app.readings.schemas import HeartbeatIn, IngestResult, PresenceRead, RejectedReading

# --- ingest --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IngestAnswer:
    """The answer to an ingest request; `replayed` when it repeats a keyed request's answer."""

    result: IngestResult
    replayed: bool = False


async def receive(
    engine: AIOEngine,
    *,
    batcher: IngestBatcher,
    context: DeviceContext,
    body_in: bytes,
    idempotency_key: str | None,
    settings: Settings,
    cache: DeviceContextCache | None = None,
) -> IngestAnswer:
    """Check, store (group commit) and answer a device's readings; idempotent with a key."""
    key = None if idempotency_key is None else check_key(idempotency_key)
    now = utcnow()
    try:
        rules = validation.Rules.of(
            device_id=context.device_id,
            product_id=context.product_id,
            telemetry=context.telemetry,
            now=now,
            max_future_skew=timedelta(seconds=settings.readings_max_future_skew_s),
            retention=timedelta(days=settings.readings_retention_days),
        )
        batch = validation.check_batch(
            validation.parse_json(body_in), rules=rules, max_batch=settings.readings_max_batch
        )
        batch = await metric_names.admit(
            engine,
            context=context,
            batch=batch,
            cap=settings.readings_max_metrics_per_device,
            cache=cache,
        )
        batch.require_some()
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
            lease_s=settings.idempotency_lease_s,
        )
        if claim.replay is not None:
            replay = IngestResult.model_validate(claim.replay)
            READINGS_INGESTED.labels("duplicate").inc(replay.accepted)
            return IngestAnswer(result=replay, replayed=True)
    rejected = [
        RejectedReading(index=r.index, reason=r.reason, detail=r.detail)  # type: ignore[arg-type]
        for r in batch.rejected
    ]
    result = _result(len(batch.docs), rejected)
    positions = list(range(len(batch.docs)))  # of the docs sent to the batcher, in batch.docs
    if claim is not None:
        idempotency.assign_ids(batch.docs, claim.key_id)
        if claim.resumed:
            # An earlier attempt's outcome was unknown: store only what it did not.
            stored = await repository.stored_ids(engine, batch.docs)
            positions = [i for i, doc in enumerate(batch.docs) if doc["_id"] not in stored]
    if claim is not None and not positions:  # the earlier attempt had stored them all
        await idempotency.complete(engine, claim.key_id, result.model_dump(mode="json"))
        READINGS_INGESTED.labels("accepted").inc(result.accepted)
        return IngestAnswer(result=result)
    try:
        outcome = await batcher.submit(
            [batch.docs[i] for i in positions],
            context,
            key_id=None if claim is None else claim.key_id,
            response=None if claim is None else result.model_dump(mode="json"),
        )
    except IngestOutcomeUnknown:
        if claim is not None:
            await idempotency.keep_for_retry(engine, claim.key_id)
        raise
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
            for i in (positions[j] for j in outcome.failed)
        ]
        errors = sorted([*rejected, *stored_failed], key=lambda r: r.index)
        result = _result(len(batch.docs) - len(stored_failed), errors)
    if claim is not None and not outcome.key_recorded:
        await idempotency.complete(engine, claim.key_id, result.model_dump(mode="json"))
    READINGS_INGESTED.labels("accepted").inc(result.accepted)
    if result.rejected:
        READINGS_INGESTED.labels("rejected").inc(result.rejected)
    return IngestAnswer(result=result)


def _result(accepted: int, errors: list[RejectedReading]) -> IngestResult:
    """The 202 answer: counts, and the first `MAX_ERRORS_REPORTED` refused readings.

    Bounded because keyed answers are stored for replay (a 1,000-reading batch must not keep
    a thousand errors per key).
    """
    return IngestResult(
        accepted=accepted, rejected=len(errors), errors=errors[: validation.MAX_ERRORS_REPORTED]
    )


async def heartbeat(
    engine: AIOEngine,
    *,
    device_id: str,
    heartbeat_in: HeartbeatIn,
    settings: Settings,
    cache: DeviceContextCache,
) -> PresenceRead:
    """Record that the device is alive, with its reported status and detail when given."""
    try:
        stored, written = await presence.heartbeat(
            engine,
            device_id=device_id,
            status=heartbeat_in.status,
            detail=heartbeat_in.detail,
            given=heartbeat_in.model_fields_set,
            throttle_s=settings.presence_throttle_s,
        )
    except presence.PresenceConflict:
        raise IngestUnavailable("The heartbeat conflicted with concurrent updates; retry") from None
    if written:
        # The next ingest refresh (in this process) expects what was just written.
        cache.note_presence(device_id, stored)
    return PresenceRead(
        device_id=device_id,
        last_seen_at=stored.get("last_seen_at"),
        reported_status=stored.get("reported_status"),
        detail=stored.get("detail") or {},
        status=presence.derive_status(
            stored, now=utcnow(), offline_after_s=settings.device_offline_after_s
        ),
    )
