"""The beat's sweep of commands (`commands.sweep`): expiries, ack timeouts, retention.

Synchronous (it runs in a Celery worker), under a Redis lock so two runs never overlap, and
idempotent: every change is a conditional write that names the state it leaves, so a poll
racing the sweep wins or loses cleanly. Each query is served by an index on
`(state, expires_at_ms)`, `(state, ack_deadline_ms)` or `finished_at_ms`; each step changes
at most COMMANDS_SWEEP_BATCH commands per run (the next run takes the rest).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pymongo.collection import Collection
from redis import Redis

from app.commands import events
from app.commands.models import CommandState
from app.core.config import Settings

logger = logging.getLogger(__name__)

LOCK_NAME = "commands.sweep"
QUEUED = CommandState.QUEUED.value
DELIVERED = CommandState.DELIVERED.value


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _move(
    commands: Collection[dict[str, Any]],
    *,
    query: dict[str, Any],
    to: CommandState,
    batch: int,
    now_ms: int,
) -> list[dict[str, Any]]:
    """Move up to `batch` commands matching `query` to `to`; the events of those moved."""
    moved: list[dict[str, Any]] = []
    fields = {"device_id": 1, "name": 1, "attempts": 1}
    changes: dict[str, Any] = {"state": to.value}
    if to is not CommandState.QUEUED:
        changes["finished_at_ms"] = now_ms
    for doc in commands.find(query, fields).limit(batch):
        # The same conditions again, on this one document: only a command still in the state
        # the query saw is moved.
        done = commands.update_one({"$and": [{"_id": doc["_id"]}, query]}, {"$set": changes})
        if done.modified_count:
            moved.append(
                events.make_event(
                    device_id=doc["device_id"],
                    command_id=str(doc["_id"]),
                    name=doc["name"],
                    state=to,
                    attempts=int(doc.get("attempts", 0)),
                )
            )
    return moved


def sweep(commands: Collection[dict[str, Any]], redis: Redis, settings: Settings) -> dict[str, int]:
    """One pass: expire, time out, requeue overdue deliveries, delete past retention."""
    now = _now_ms()
    batch = settings.commands_sweep_batch
    most = settings.commands_max_attempts
    overdue = [{"state": DELIVERED}, {"ack_deadline_ms": {"$lt": now}}]
    steps: list[tuple[str, CommandState, dict[str, Any]]] = [
        # Past their TTL and not being worked on: queued, or delivered and never answered.
        ("expired", CommandState.EXPIRED, {"state": QUEUED, "expires_at_ms": {"$lte": now}}),
        (
            "expired_overdue",
            CommandState.EXPIRED,
            {"$and": [*overdue, {"expires_at_ms": {"$lte": now}}]},
        ),
        ("timeout", CommandState.TIMEOUT, {"$and": [*overdue, {"attempts": {"$gte": most}}]}),
        ("requeued", CommandState.QUEUED, {"$and": [*overdue, {"attempts": {"$lt": most}}]}),
    ]
    counts: dict[str, int] = {}
    published: list[dict[str, Any]] = []
    for label, to, query in steps:
        moved = _move(commands, query=query, to=to, batch=batch, now_ms=now)
        counts[label] = len(moved)
        published.extend(moved)
    events.publish_sync(redis, published)
    cutoff = now - settings.commands_retention_days * 86_400_000
    counts["deleted"] = commands.delete_many({"finished_at_ms": {"$lt": cutoff}}).deleted_count
    if any(counts.values()):
        logger.info("commands swept", extra=counts)
    return counts
