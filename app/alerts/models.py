"""Storage models of the alerts domain: rules, alarms, and the raw collections beside them.

Alarm times that change after insert are integer epoch milliseconds (`*_ms`): the embedded
server stores a `$set` datetime as a string, and integers compare exactly everywhere.

Raw collections (documents written by the evaluator and the worker, no ODMantic model):

`alert_states` (one per (rule, device), `_id` = "<rule id>:<device id>"):
    {"rule_id", "device_id", "last_ms": newest reading time evaluated, "pending_ms": since
     when a for_s condition holds (absent when it does not), "active": bool, "due_ms": when
     the beat must look again (for_s expiry; absent when nothing is due), "anomaly": {"n",
     "mean", "var"}, "rate": {"points": [[ms, value], ...]}}
`alert_events` (one per alarm transition, `_id` = the notification id "<alarm id>:<event>"):
    {"alarm_id", "rule_id", "event": raised|cleared|acknowledged, "status": pending|done,
     "created_ms", "decision": sent|suppressed, "payload": {...}}
`webhook_deliveries` (one per event and target, `_id` = "<notification id>:<n>"):
    {"alarm_id", "notification_id", "rule_id", "url", "body": str, "status":
     pending|sending|delivered|failed|refused, "attempts": int, "lease_ms", "last_error"}
`alert_notification_log` (insert-only; the delivery log of each alarm):
    {"alarm_id", "notification_id", "channel": email|webhook|any, "target", "attempt",
     "outcome": queued|delivered|retry|failed|refused|suppressed, "status_code", "error",
     "at_ms"}
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from odmantic import Field

from app.core import collections
from app.core.models import Document, index, stored_in, utcnow

Value = float | bool | str | None


class Severity(StrEnum):
    """How bad an alarm is, most severe first."""

    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    WARNING = "warning"
    INFO = "info"


class ConditionType(StrEnum):
    """The kinds of rule condition."""

    THRESHOLD = "threshold"
    NO_DATA = "no_data"
    ANOMALY = "anomaly"
    RATE = "rate"


class AlarmStatus(StrEnum):
    """Active until its clear condition holds or someone clears it."""

    ACTIVE = "active"
    CLEARED = "cleared"


class AlarmEvent(StrEnum):
    """Transitions that are recorded and may be notified."""

    RAISED = "raised"
    CLEARED = "cleared"
    ACKNOWLEDGED = "acknowledged"


class AlertRule(Document):
    """A rule on a product's devices, a folder's devices (all below it) or one device.

    `scope_path` is the scope resource's access path (list filters match grants on it);
    `timed` marks rules the beat must watch (no_data, and threshold with for_s).
    """

    name: str
    scope_type: str
    scope_id: str
    scope_path: list[str] = Field(default_factory=list)
    severity: Severity
    enabled: bool = True
    condition_type: ConditionType
    condition: dict[str, Any]
    notify: dict[str, Any] = Field(default_factory=dict)
    timed: bool = False
    created_by: str
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    model_config = stored_in(
        collections.ALERT_RULES,
        index("scope_type", "scope_id"),
        index("scope_path"),
        index("condition_type"),
    )


class Alarm(Document):
    """One raising of a rule on a device, active while `active_key` is "<rule>:<device>".

    Cleared alarms keep their history; `active_key` then holds "cleared:<alarm id>" so the
    unique index admits the next active alarm of the same rule and device.
    """

    rule_id: str
    rule_name: str
    severity: Severity
    condition_type: ConditionType
    device_id: str
    device_name: str | None = None
    product_id: str
    folder_path: list[str] = Field(default_factory=list)
    status: AlarmStatus = AlarmStatus.ACTIVE
    acknowledged: bool = False
    active_key: str
    metric: str | None = None
    count: int = 1
    first_value: Value = None
    last_value: Value = None
    raised_ms: int
    last_ms: int
    cleared_ms: int | None = None
    # Server clock when it was cleared: retention counts from this, not from `cleared_ms` (the
    # reading time that cleared it), so alarms of back-filled or late data are kept too.
    closed_ms: int | None = None
    acknowledged_ms: int | None = None
    acknowledged_by: str | None = None
    cleared_by: str | None = None
    raised_reason: str | None = None
    acknowledged_reason: str | None = None
    cleared_reason: str | None = None
    created_at: datetime = Field(default_factory=utcnow)

    model_config = stored_in(
        collections.ALARMS,
        index("active_key", unique=True),
        index("device_id"),
        index("folder_path"),
        index("rule_id"),
        index("status", "severity"),
        index("closed_ms"),
    )


def active_key(rule_id: str, device_id: str) -> str:
    """The unique key an active alarm of this rule on this device holds."""
    return f"{rule_id}:{device_id}"


def state_id(rule_id: str, device_id: str) -> str:
    """The `_id` of a (rule, device) state document."""
    return f"{rule_id}:{device_id}"
