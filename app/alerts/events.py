"""Notification events: one document per alarm transition, whose `_id` is the notification id.

The id is "<alarm id>:<event>" (an alarm is raised once, cleared at most once, acknowledged
at most once), so it is the same however often the event is written or delivered: a worker
that crashes and re-runs sends the same id, and receivers de-duplicate on it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.alerts.models import Alarm, AlarmEvent, AlertRule
from app.alerts.schemas import AlarmRead

NOTIFY_TASK = "alerts.notify"  # app.worker.tasks.NOTIFY_ALERT; not imported: the API stays light
PENDING = "pending"
DONE = "done"


def notification_id(alarm_id: str, event: AlarmEvent) -> str:
    """The stable id of one transition's notifications."""
    return f"{alarm_id}:{event.value}"


def wanted(rule: AlertRule, event: AlarmEvent) -> bool:
    """Whether the rule notifies anyone of this transition."""
    notify = rule.notify or {}
    if not (notify.get("emails") or notify.get("webhooks")):
        return False
    if event is AlarmEvent.CLEARED:
        return bool(notify.get("on_clear", True))
    if event is AlarmEvent.ACKNOWLEDGED:
        return bool(notify.get("on_ack", False))
    return True


def event_doc(rule: AlertRule, alarm_doc: dict[str, Any], event: AlarmEvent) -> dict[str, Any]:
    """The event document (with the payload webhooks send) for a transition of an alarm."""
    alarm = Alarm.model_validate_doc(alarm_doc)
    nid = notification_id(str(alarm.id), event)
    now = datetime.now(UTC)
    payload = {
        "id": nid,
        "event": f"alarm.{event.value}",
        "occurred_at": now.isoformat(),
        "alarm": AlarmRead.of(alarm).model_dump(mode="json"),
        "rule": {
            "id": str(rule.id),
            "name": rule.name,
            "severity": rule.severity.value,
            "condition": rule.condition,
        },
    }
    return {
        "_id": nid,
        "alarm_id": str(alarm.id),
        "rule_id": str(rule.id),
        "event": event.value,
        "status": PENDING,
        "created_ms": int(now.timestamp() * 1000),
        "payload": payload,
    }
