"""Worker figures for `/metrics`, read on scrape: outbox sizes and Celery task outcomes."""

from __future__ import annotations

import asyncio
import logging

from odmantic import AIOEngine
from redis.asyncio import Redis

from app.alerts.notifier import TRANSITIONS_KEY
from app.alerts.webhooks import NOTIFICATIONS_KEY
from app.core import db
from app.core.metrics import (
    ALARM_TRANSITIONS,
    ALERT_NOTIFICATIONS,
    CELERY_TASKS,
    OUTBOX_EMAILS,
)
from app.emails.models import EmailOutbox, OutboxStatus
from app.worker.signals import TASK_OUTCOMES_KEY

logger = logging.getLogger(__name__)


async def outbox_counts(engine: AIOEngine) -> dict[str, int]:
    """Number of outbox entries per status (every status present, zero when none)."""
    pipeline = [{"$group": {"_id": "$status", "n": {"$sum": 1}}}]
    counts = {status.value: 0 for status in OutboxStatus}
    async for row in db.collection(engine, EmailOutbox).aggregate(pipeline):
        if row["_id"] in counts:
            counts[row["_id"]] = int(row["n"])
    return counts


async def task_outcomes(redis: Redis, key: str = TASK_OUTCOMES_KEY) -> dict[tuple[str, ...], float]:
    """Counts kept in a Redis hash of "a|b" fields (task outcomes by default), by (a, b)."""
    raw = await redis.hgetall(key)
    totals: dict[tuple[str, ...], float] = {}
    for field, value in raw.items():
        name = field.decode() if isinstance(field, bytes) else str(field)
        task, _, outcome = name.partition("|")
        totals[(task, outcome)] = float(value)
    return totals


async def refresh(engine: AIOEngine, redis: Redis, *, timeout: float) -> None:
    """Load current figures into the registry; on failure keep the previous ones."""
    try:
        counts = await asyncio.wait_for(outbox_counts(engine), timeout)
    except Exception as exc:  # a scrape must answer even when MongoDB is away
        logger.warning("outbox counts unavailable", extra={"error": type(exc).__name__})
    else:
        for status, n in counts.items():
            OUTBOX_EMAILS.labels(status=status).set(n)
    try:
        totals = await asyncio.wait_for(task_outcomes(redis), timeout)
    except Exception as exc:
        logger.warning("task outcomes unavailable", extra={"error": type(exc).__name__})
    else:
        CELERY_TASKS.set_totals(totals)
    for counter, key in (
        (ALARM_TRANSITIONS, TRANSITIONS_KEY),
        (ALERT_NOTIFICATIONS, NOTIFICATIONS_KEY),
    ):
        try:
            counter.set_totals(await asyncio.wait_for(task_outcomes(redis, key), timeout))
        except Exception as exc:
            logger.warning("alert counts unavailable", extra={"error": type(exc).__name__})
