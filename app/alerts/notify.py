"""The worker side of notifications: one event in, outbox emails and webhook deliveries out.

Idempotent: each email is an outbox entry with dedupe key "<notification id>:<address>" and
each webhook a delivery whose `_id` is "<notification id>:<n>", so a task that runs twice
(redelivered after a worker died, or re-enqueued by the beat) adds nothing; the outbox and
the delivery task then send each at most once in practice, carrying the notification id.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from pymongo.errors import DuplicateKeyError

from app.alerts import digest, events
from app.alerts.context import AlertsContext
from app.alerts.models import AlertRule
from app.alerts.webhooks import NOTIFICATIONS_KEY, PENDING, log_entry
from app.core import collections
from app.core.models import epoch_ms, parse_object_id, utcnow
from app.emails.models import EmailOutbox, OutboxStatus

logger = logging.getLogger(__name__)


def _decide(ctx: AlertsContext, event: dict[str, Any], rule: AlertRule) -> str:
    """'send' or 'suppressed' (the rule's minimum interval), decided once per event."""
    if event.get("decision"):
        return str(event["decision"])
    interval = int(rule.notify.get("min_interval_s") or 0)
    decision = "send"
    if interval > 0:
        taken = ctx.redis.set(digest.throttle_key(str(rule.id)), event["_id"], nx=True, ex=interval)
        decision = "send" if taken else "suppressed"
    coll = ctx.db[collections.ALERT_EVENTS]
    coll.update_one(
        {"_id": event["_id"], "decision": {"$exists": False}}, {"$set": {"decision": decision}}
    )
    stored = coll.find_one({"_id": event["_id"]}, {"decision": 1}) or {}
    return str(stored.get("decision") or decision)


def process_event(
    ctx: AlertsContext,
    event_id: str,
    *,
    send_email: Callable[[str], None],
    send_webhook: Callable[[str], None],
) -> str:
    """Fan one event out to its rule's channels: 'done', 'suppressed' or 'skipped'."""
    coll = ctx.db[collections.ALERT_EVENTS]
    event = coll.find_one({"_id": event_id})
    if event is None or event.get("status") == events.DONE:
        return "skipped"
    rule_oid = parse_object_id(event.get("rule_id", ""))
    rule_doc = ctx.db[collections.ALERT_RULES].find_one({"_id": rule_oid}) if rule_oid else None
    if rule_doc is None:
        coll.update_one(
            {"_id": event_id}, {"$set": {"status": events.DONE, "decision": "rule gone"}}
        )
        return "skipped"
    rule = AlertRule.model_validate_doc(rule_doc)
    if _decide(ctx, event, rule) == "suppressed":
        done: dict[str, Any] = {"status": events.DONE}
        why = "suppressed (rule minimum interval)"
        if rule.notify.get("digest") and rule.notify.get("emails"):
            done["digest"] = digest.PENDING  # app/alerts/digest.py sends it when the interval ends
            why = "suppressed (rule minimum interval; in the next digest)"
        coll.update_one({"_id": event_id}, {"$set": done})
        log_entry(ctx, _line(event, "any", None, why))
        _count(ctx, "any", "suppressed")
        return "suppressed"
    payload = event["payload"]
    alarm = payload["alarm"]
    for address in rule.notify.get("emails", []):
        entry = EmailOutbox(
            to=address,
            template="alert_notification",
            context={
                "event": event["event"],
                "notification_id": event_id,
                "rule_name": rule.name,
                "severity": rule.severity.value,
                "device_name": alarm.get("device_name") or alarm["device_id"],
                "metric": alarm.get("metric"),
                "value": alarm.get("last_value"),
                "threshold": rule.condition.get("value"),
                "triggered_at": alarm.get("raised_at"),
            },
            dedupe_key=f"{event_id}:{address}",
        )
        try:
            ctx.engine.get_collection(EmailOutbox).insert_one(entry.model_dump_doc())
        except DuplicateKeyError:
            existing = ctx.engine.get_collection(EmailOutbox).find_one(
                {"dedupe_key": entry.dedupe_key}, {"status": 1}
            )
            if existing is None or existing.get("status") != OutboxStatus.PENDING.value:
                continue
            send_email(str(existing["_id"]))
            continue
        send_email(str(entry.id))
        log_entry(ctx, _line(event, "email", address, "queued"))
        _count(ctx, "email", "queued")
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    for n, target in enumerate(rule.notify.get("webhooks", [])):
        delivery_id = f"{event_id}:{n}"
        doc = {
            "_id": delivery_id,
            "notification_id": event_id,
            "alarm_id": event["alarm_id"],
            "rule_id": event["rule_id"],
            "event": payload["event"],
            "url": target["url"],
            "body": body,
            "status": PENDING,
            "attempts": 0,
            "next_ms": utcnow_ms(),
            "created_at": utcnow(),
        }
        try:
            ctx.db[collections.WEBHOOK_DELIVERIES].insert_one(doc)
        except DuplicateKeyError:
            pass  # made by an earlier run; the delivery task claims it at most once at a time
        send_webhook(delivery_id)
    coll.update_one({"_id": event_id}, {"$set": {"status": events.DONE}})
    return "done"


def _line(event: dict[str, Any], channel: str, target: str | None, outcome: str) -> dict[str, Any]:
    return {
        "at_ms": utcnow_ms(),
        "alarm_id": event["alarm_id"],
        "notification_id": event["_id"],
        "channel": channel,
        "target": target,
        "outcome": outcome,
    }


def utcnow_ms() -> int:
    """Wall-clock epoch milliseconds."""
    return epoch_ms(utcnow())


def _count(ctx: AlertsContext, channel: str, outcome: str) -> None:
    try:
        ctx.redis.hincrby(NOTIFICATIONS_KEY, f"{channel}|{outcome}", 1)
    except Exception as exc:
        logger.warning("notification outcome not counted", extra={"error": type(exc).__name__})
