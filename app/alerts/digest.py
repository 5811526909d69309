"""Digests: what a rule's minimum interval held back, emailed as one message when it ends.

A rule with `notify.min_interval_s` and `notify.digest` has its suppressed events marked
`digest: "pending"` by the notify task. The beat's sweep then, for each rule whose interval is
over (its throttle key in Redis has expired), writes one outbox email per address listing those
events, marks them with the digest's id, and starts the next interval; what is held back during
that interval goes into the next digest. So a flapping rule sends at most one email per
interval and nothing is silently lost.

The digest's id hashes the ids of the events it lists, and the outbox dedupe key is
"<digest id>:<address>": a sweep that dies after writing the emails and before marking the
events writes nothing new when it runs again.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from pymongo.errors import DuplicateKeyError

from app.alerts.context import AlertsContext
from app.alerts.models import AlertRule
from app.alerts.webhooks import log_entry
from app.core import collections
from app.core.models import epoch_ms, parse_object_id, utcnow
from app.emails.models import EmailOutbox, OutboxStatus

PENDING = "pending"
DROPPED = "dropped"
# Events listed one by one in a digest email; the rest are counted.
LISTED = 50


def throttle_key(rule_id: str) -> str:
    """The Redis key that holds a rule's minimum interval (set by the first notification)."""
    return f"sensorhub:alerts:notified:{rule_id}"


def send_due(ctx: AlertsContext, *, page: int, enqueue_email: Callable[[str], None]) -> int:
    """Write (and enqueue) the digests whose interval is over; the number of digests."""
    events = ctx.db[collections.ALERT_EVENTS]
    waiting: dict[str, list[dict[str, Any]]] = defaultdict(list)
    projection = {"rule_id": 1, "alarm_id": 1, "event": 1, "payload": 1, "created_ms": 1}
    for doc in events.find({"digest": PENDING}, projection).sort("created_ms", 1).limit(page):
        waiting[doc["rule_id"]].append(doc)
    sent = 0
    for rule_id, held in waiting.items():
        if ctx.redis.exists(throttle_key(rule_id)):
            continue  # the interval is not over yet
        ids = [doc["_id"] for doc in held]
        rule = _rule(ctx, rule_id)
        if rule is None or not rule.notify.get("digest") or not rule.notify.get("emails"):
            events.update_many({"_id": {"$in": ids}}, {"$set": {"digest": DROPPED}})
            continue
        digest_id = "digest:" + hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:24]
        for address in rule.notify["emails"]:
            outbox_id = _write_email(ctx, rule, held, digest_id, address)
            if outbox_id is not None:
                enqueue_email(outbox_id)
        events.update_many({"_id": {"$in": ids}}, {"$set": {"digest": digest_id}})
        now = epoch_ms(utcnow())
        for doc in held:
            log_entry(
                ctx,
                {
                    "at_ms": now,
                    "alarm_id": doc["alarm_id"],
                    "notification_id": doc["_id"],
                    "channel": "email",
                    "target": None,
                    "outcome": f"queued in {digest_id}",
                },
            )
        # The digest is a notification: the next interval starts now.
        interval = int(rule.notify.get("min_interval_s") or 0)
        if interval > 0:
            ctx.redis.set(throttle_key(rule_id), digest_id, ex=interval)
        sent += 1
    return sent


def _rule(ctx: AlertsContext, rule_id: str) -> AlertRule | None:
    oid = parse_object_id(rule_id)
    doc = ctx.db[collections.ALERT_RULES].find_one({"_id": oid}) if oid else None
    return None if doc is None else AlertRule.model_validate_doc(doc)


def _write_email(
    ctx: AlertsContext, rule: AlertRule, held: list[dict[str, Any]], digest_id: str, address: str
) -> str | None:
    """The outbox entry of one address's digest: its id if it is to be sent, else None."""
    items = []
    for doc in held[:LISTED]:
        alarm = (doc.get("payload") or {}).get("alarm") or {}
        items.append(
            {
                "event": doc.get("event"),
                "device_name": alarm.get("device_name") or alarm.get("device_id"),
                "metric": alarm.get("metric"),
                "value": alarm.get("last_value"),
                "at": (doc.get("payload") or {}).get("occurred_at"),
            }
        )
    entry = EmailOutbox(
        to=address,
        template="alert_digest",
        context={
            "rule_name": rule.name,
            "severity": rule.severity.value,
            "count": len(held),
            "items": items,
            "more": max(len(held) - LISTED, 0),
            "notification_id": digest_id,
        },
        dedupe_key=f"{digest_id}:{address}",
    )
    outbox = ctx.engine.get_collection(EmailOutbox)
    try:
        outbox.insert_one(entry.model_dump_doc())
    except DuplicateKeyError:
        existing = outbox.find_one({"dedupe_key": entry.dedupe_key}, {"status": 1})
        if existing is None or existing.get("status") != OutboxStatus.PENDING.value:
            return None
        return str(existing["_id"])
    return str(entry.id)
