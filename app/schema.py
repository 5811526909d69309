"""Every collection and index the service needs (created by the migrations in app.migrations)."""

from __future__ import annotations

from odmantic import Model
from pymongo import ASCENDING, DESCENDING, IndexModel

from app.alerts.models import Alarm, AlertRule
from app.auth.models import Session, User
from app.catalog.models import Device, Folder, Product
from app.catalog.permissions.models import Grant, Invite
from app.commands.models import Command
from app.core import collections
from app.core.config import Settings
from app.core.db import CollectionSpec
from app.emails.models import EmailOutbox


def models() -> list[type[Model]]:
    """The ODMantic models whose collections and indexes ODMantic creates."""
    return [
        EmailOutbox,
        Session,
        User,
        Folder,
        Product,
        Device,
        Grant,
        Invite,
        Command,
        AlertRule,
        Alarm,
    ]


def readings_spec(settings: Settings) -> CollectionSpec:
    """The readings time-series collection (its expiry follows READINGS_RETENTION_DAYS)."""
    return CollectionSpec(
        name=collections.READINGS,
        options={
            "timeseries": {"timeField": "ts", "metaField": "meta", "granularity": "seconds"},
            "expireAfterSeconds": settings.readings_retention_days * 86_400,
        },
        indexes=[
            IndexModel([("meta.device_id", ASCENDING), ("ts", DESCENDING)], name="device_ts"),
        ],
    )


def collections_(settings: Settings) -> list[CollectionSpec]:
    """Collections with options or indexes beyond what the models declare."""
    return [
        readings_spec(settings),
        CollectionSpec(
            name=collections.IDEMPOTENCY_KEYS,
            indexes=[
                IndexModel([("device_id", ASCENDING), ("key", ASCENDING)], unique=True),
                IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0),
            ],
        ),
        CollectionSpec(name=collections.DEVICE_LATEST),
        CollectionSpec(name=collections.COMMAND_SEQUENCES),
        CollectionSpec(
            name=collections.ALERT_STATES,
            # The beat's for_s expiry scan; `rule_id` drops a rule's states when it changes.
            indexes=[IndexModel([("due_ms", ASCENDING)]), IndexModel([("rule_id", ASCENDING)])],
        ),
        CollectionSpec(
            name=collections.ALERT_EVENTS,
            indexes=[
                IndexModel([("status", ASCENDING), ("created_ms", ASCENDING)]),
                IndexModel([("alarm_id", ASCENDING)]),
                IndexModel([("digest", ASCENDING), ("created_ms", ASCENDING)]),
            ],
        ),
        CollectionSpec(
            name=collections.NOTIFICATION_LOG,
            indexes=[IndexModel([("alarm_id", ASCENDING), ("at_ms", ASCENDING)])],
        ),
        CollectionSpec(
            name=collections.WEBHOOK_DELIVERIES,
            indexes=[
                IndexModel([("alarm_id", ASCENDING)]),
                IndexModel([("status", ASCENDING), ("next_ms", ASCENDING)]),
            ],
        ),
    ]
