"""Cleanup on the beat schedule; each job holds a Redis lock, so two runs never overlap.

TTL indexes expire sessions and idempotency keys and the time-series collection expires
readings on servers that support them; these jobs are the fallback for servers that do not
(and they are idempotent: a second run finds nothing left to do).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId

from app.catalog import repair
from app.commands import sweep as commands_sweep
from app.core import collections
from app.core.models import utcnow
from app.emails.models import EmailOutbox, OutboxStatus
from app.stats import devices as stats_devices
from app.worker.context import WorkerContext
from app.worker.locks import redis_lock

logger = logging.getLogger(__name__)

# A crashed run holds its lock at most this long; longer than the task time limit.
LOCK_TTL_MS = 15 * 60 * 1000

SKIPPED: dict[str, Any] = {"skipped": "another run holds the lock"}

# Folders changed this long before the previous repair run are checked again.
REPAIR_MARGIN_S = 120


def delete_before(
    ctx: WorkerContext,
    job: str,
    *,
    collection: str,
    field: str,
    cutoff: Any,
    comment: str | None = None,
) -> dict[str, Any]:
    """Delete documents whose `field` is before `cutoff`, under the job's lock."""
    with redis_lock(ctx.redis, job, ttl_ms=LOCK_TTL_MS) as acquired:
        if not acquired:
            logger.info("cleanup skipped: locked", extra={"job": job})
            return SKIPPED
        result = ctx.db[collection].delete_many({field: {"$lt": cutoff}}, comment=comment)
    if result.deleted_count:
        logger.info("cleanup", extra={"job": job, "deleted": result.deleted_count})
    return {"deleted": result.deleted_count}


def _delete_expired(ctx: WorkerContext, collection: str) -> dict[str, Any]:
    """Delete the documents of `collection` whose `expires_at` has passed."""
    return delete_before(
        ctx, f"cleanup.{collection}", collection=collection, field="expires_at", cutoff=utcnow()
    )


def expired_sessions(ctx: WorkerContext) -> dict[str, Any]:
    """Delete sessions whose `expires_at` has passed."""
    return _delete_expired(ctx, collections.SESSIONS)


def expired_idempotency_keys(ctx: WorkerContext) -> dict[str, Any]:
    """Delete idempotency keys whose `expires_at` has passed."""
    return _delete_expired(ctx, collections.IDEMPOTENCY_KEYS)


# Sent with the one `readings` delete by time, so that it reads as what it is in the server's
# log and the test suite's command corpus: it runs only where `readings` is a plain collection.
PLAIN_COLLECTION_FALLBACK = "sensorhub: retention on a plain readings collection"


def readings_expire_themselves(ctx: WorkerContext) -> bool:
    """True when `readings` is a time-series collection with an expiry (the server deletes)."""
    for info in ctx.db.list_collections():  # filtered here: the embedded server ignores filters
        if info.get("name") == collections.READINGS:
            options = info.get("options") or {}
            return info.get("type") == "timeseries" and bool(options.get("expireAfterSeconds"))
    return False


def old_readings(ctx: WorkerContext) -> dict[str, Any]:
    """Delete readings older than READINGS_RETENTION_DAYS, where the server does not.

    A time-series collection expires its own readings (`expireAfterSeconds`, kept equal to the
    setting at start-up), and before MongoDB 7.0 refuses deletes that do not filter on `meta`
    only: there this job does nothing.
    """
    if readings_expire_themselves(ctx):
        return {"skipped": "the time-series collection expires readings itself"}
    cutoff = utcnow() - timedelta(days=ctx.settings.readings_retention_days)
    return delete_before(
        ctx,
        "cleanup.readings",
        collection=collections.READINGS,
        field="ts",
        cutoff=cutoff,
        comment=PLAIN_COLLECTION_FALLBACK,
    )


def deleted_devices_data(ctx: WorkerContext, *, batch: int = 1000) -> dict[str, Any]:
    """Delete the readings, latest values and idempotency keys of devices that are gone.

    Deleting a device (or its folder) answers at once; its data goes here, on the next run.
    Every device that ever posted has a `device_latest` document, so those are the candidates;
    a device whose document still exists is never touched.
    """
    job = "cleanup.deleted_devices"
    deleted = {"devices": 0, "readings": 0}
    with redis_lock(ctx.redis, job, ttl_ms=LOCK_TTL_MS) as acquired:
        if not acquired:
            logger.info("cleanup skipped: locked", extra={"job": job})
            return SKIPPED
        after = ""
        while True:
            ids = [
                str(d["_id"])
                for d in ctx.db[collections.DEVICE_LATEST]
                .find({"_id": {"$gt": after}}, {"_id": 1})
                .sort("_id", 1)
                .limit(batch)
            ]
            if not ids:
                break
            after = ids[-1]
            oids = [ObjectId(i) for i in ids if ObjectId.is_valid(i)]
            alive = {
                str(d["_id"])
                for d in ctx.db[collections.DEVICES].find({"_id": {"$in": oids}}, {"_id": 1})
            }
            gone = [i for i in ids if i not in alive]
            if not gone:
                continue
            result = ctx.db[collections.READINGS].delete_many({"meta.device_id": {"$in": gone}})
            ctx.db[collections.IDEMPOTENCY_KEYS].delete_many({"device_id": {"$in": gone}})
            ctx.db[collections.DEVICE_LATEST].delete_many({"_id": {"$in": gone}})
            deleted["devices"] += len(gone)
            deleted["readings"] += result.deleted_count
    if deleted["devices"]:
        logger.info("cleanup", extra={"job": job, **deleted})
    return deleted


def archive_outbox(ctx: WorkerContext) -> dict[str, Any]:
    """Archive sent and failed emails older than OUTBOX_ARCHIVE_AFTER_DAYS, and delete
    archived ones older than OUTBOX_RETENTION_DAYS, so the outbox does not grow forever.

    Archived entries keep who, what template and the outcome, but drop the template context
    (names, links), which is no longer needed. Both steps go by `updated_at`, which archiving
    leaves alone: the retention counts from the entry's last delivery attempt.
    """
    now = utcnow()
    archive_before = now - timedelta(days=ctx.settings.outbox_archive_after_days)
    delete_before = now - timedelta(days=ctx.settings.outbox_retention_days)
    outbox = ctx.engine.get_collection(EmailOutbox)
    with redis_lock(ctx.redis, "cleanup.outbox", ttl_ms=LOCK_TTL_MS) as acquired:
        if not acquired:
            logger.info("cleanup skipped: locked", extra={"job": "cleanup.outbox"})
            return SKIPPED
        deleted = outbox.delete_many(
            {
                "status": OutboxStatus.ARCHIVED.value,
                "updated_at": {"$lt": delete_before},
            }
        )
        archived = outbox.update_many(
            {
                "status": {"$in": [OutboxStatus.SENT.value, OutboxStatus.FAILED.value]},
                "updated_at": {"$lt": archive_before},
            },
            {"$set": {"status": OutboxStatus.ARCHIVED.value, "context": {}}},
        )
    counts = {"archived": archived.modified_count, "deleted": deleted.deleted_count}
    if any(counts.values()):
        logger.info("cleanup", extra={"job": "cleanup.outbox", **counts})
    return counts


REPAIR_LAST_RUN_KEY = "sensorhub:catalog-repair:last-run"


def repair_folder_tree(ctx: WorkerContext) -> dict[str, Any]:
    """Run `app.catalog.repair.repair_tree` under its lock, checking items of folders changed
    since the previous run (with a margin for clocks and long moves)."""
    job = "catalog.repair_tree"
    with redis_lock(ctx.redis, job, ttl_ms=LOCK_TTL_MS) as acquired:
        if not acquired:
            logger.info("repair skipped: locked", extra={"job": job})
            return SKIPPED
        started = utcnow()
        last = ctx.redis.get(REPAIR_LAST_RUN_KEY)
        since = None
        if last is not None:
            text = last.decode() if isinstance(last, bytes) else str(last)
            since = datetime.fromisoformat(text) - timedelta(seconds=REPAIR_MARGIN_S)
        counts = repair.repair_tree(ctx.db, since=since)
        ctx.redis.set(REPAIR_LAST_RUN_KEY, started.isoformat())
    return dict(counts)


def recount_devices(ctx: WorkerContext) -> dict[str, Any]:
    """Rebuild the statistics' device counters (app/stats/devices.py) under the job's lock."""
    job = "stats.recount_devices"
    with redis_lock(ctx.redis, job, ttl_ms=LOCK_TTL_MS) as acquired:
        if not acquired:
            logger.info("recount skipped: locked", extra={"job": job})
            return SKIPPED
        counts = stats_devices.recount(ctx.db, ctx.redis)
    return dict(counts)


def sweep_commands(ctx: WorkerContext) -> dict[str, Any]:
    """Expire, time out and requeue device commands, and delete finished ones past
    COMMANDS_RETENTION_DAYS (app/commands/sweep.py), under the job's lock."""
    with redis_lock(ctx.redis, commands_sweep.LOCK_NAME, ttl_ms=LOCK_TTL_MS) as acquired:
        if not acquired:
            logger.info("sweep skipped: locked", extra={"job": commands_sweep.LOCK_NAME})
            return SKIPPED
        counts = commands_sweep.sweep(ctx.db[collections.COMMANDS], ctx.redis, ctx.settings)
    return dict(counts)
