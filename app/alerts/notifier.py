"""The API side of notifications: record each transition's event, then hand it to a worker.

The event document is written before the task is sent, so a broker outage loses nothing (the
beat re-enqueues events left pending); nothing here waits on an SMTP server or a webhook.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from celery import Celery
from odmantic import AIOEngine
from pymongo.errors import DuplicateKeyError
from redis.asyncio import Redis

from app.alerts import events
from app.alerts.models import AlarmEvent, AlertRule
from app.core import collections
from app.core.db import database
from app.live import publish as live_publish
from app.live.channels import ALARMS

logger = logging.getLogger(__name__)

TRANSITIONS_KEY = "sensorhub:metrics:alarm_transitions"


class Notifier:
    """Records alarm transitions (events, metrics) and enqueues their notifications."""

    def __init__(self, engine: AIOEngine, celery: Celery | None, redis: Redis | None) -> None:
        self.engine = engine
        self.celery = celery
        self.redis = redis

    async def transition(
        self, rule: AlertRule, alarm_doc: dict[str, Any], event: AlarmEvent
    ) -> None:
        """Count a transition and, if the rule wants it, record and enqueue its notification."""
        await self._count(event, rule.severity.value)
        doc = events.event_doc(rule, alarm_doc, event)
        if self.redis is not None:  # live `alarms` subscribers of the device (best effort)
            await live_publish.publish(
                self.redis, ALARMS, str(alarm_doc["device_id"]), doc["payload"]
            )
        if not events.wanted(rule, event):
            return
        try:
            await database(self.engine)[collections.ALERT_EVENTS].insert_one(doc)
        except DuplicateKeyError:
            return  # recorded already (another process saw the same transition)
        await self.enqueue(doc["_id"])

    async def enqueue(self, event_id: str) -> None:
        """Send the notify task; on a broker failure the beat re-enqueues the event later."""
        if self.celery is None:
            return
        try:
            await asyncio.to_thread(
                self.celery.send_task, events.NOTIFY_TASK, args=[event_id], retry=False
            )
        except Exception as exc:
            logger.warning(
                "alert event not enqueued", extra={"id": event_id, "error": type(exc).__name__}
            )

    async def _count(self, event: AlarmEvent, severity: str) -> None:
        if self.redis is None:
            return
        try:
            await self.redis.hincrby(TRANSITIONS_KEY, f"{event.value}|{severity}", 1)
        except Exception as exc:  # metrics never fail an evaluation
            logger.warning("alarm transition not counted", extra={"error": type(exc).__name__})
