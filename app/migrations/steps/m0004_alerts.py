"""The alerts' collections and indexes (app/alerts): rules, alarms, states, events, logs."""

from __future__ import annotations

from odmantic import AIOEngine

from app import schema
from app.alerts.models import Alarm, AlertRule
from app.core import collections, db
from app.core.config import Settings

ALERT_COLLECTIONS = {
    collections.ALERT_STATES,
    collections.ALERT_EVENTS,
    collections.NOTIFICATION_LOG,
    collections.WEBHOOK_DELIVERIES,
}


async def apply(engine: AIOEngine, settings: Settings) -> None:
    """Create the alert rules and alarms with their indexes, and the raw alert collections."""
    specs = [s for s in schema.collections_(settings) if s.name in ALERT_COLLECTIONS]
    await db.ensure_schema(engine, models=[AlertRule, Alarm], collections=specs)
