"""Alarm writes, as operations both the API (motor) and the worker (pymongo) run.

History is the three scalar stamps an alarm can have (raised, acknowledged, cleared: each
at most once, with who, when and why), not an array: the embedded server stores a `$push`ed
or `$setOnInsert` sub-document as a JSON string.

One active alarm per (rule, device): the active alarm holds `active_key` "<rule>:<device>"
under a plain unique index, and a raise is an upsert on that key, so any number of API
processes and workers raising at once make one alarm (the losers' upserts update it, or fail
with a duplicate key and are retried as updates). Clearing moves `active_key` to
"cleared:<alarm id>", which frees the key for the next alarm and keeps the index unique
without a partial filter (see mongo-compat.md, row 12).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bson import ObjectId

from app.alerts.models import AlarmStatus, AlertRule, active_key
from app.core.models import utcnow

SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What an alarm records about its device."""

    id: str
    name: str | None
    product_id: str
    folder_path: tuple[str, ...]


def now_ms() -> int:
    """Wall-clock epoch milliseconds."""
    return time.time_ns() // 1_000_000


def raise_op(
    rule: AlertRule,
    device: DeviceInfo,
    *,
    ts_ms: int,
    value: Any,
    first_value: Any = None,
    first_ms: int | None = None,
    repeats: int = 1,
    reason: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(filter, update) of an upsert that raises the alarm or counts a repeat on it.

    `repeats` = 0 only makes sure the alarm exists (the beat's raises: idempotent reruns).
    """
    key = active_key(str(rule.id), device.id)
    first_ms = ts_ms if first_ms is None else first_ms
    on_insert: dict[str, Any] = {
        "_id": ObjectId(),
        "rule_id": str(rule.id),
        "rule_name": rule.name,
        "severity": rule.severity.value,
        "condition_type": rule.condition_type.value,
        "device_id": device.id,
        "device_name": device.name,
        "product_id": device.product_id,
        "folder_path": list(device.folder_path),
        "status": AlarmStatus.ACTIVE.value,
        "acknowledged": False,
        "metric": rule.condition.get("metric"),
        "first_value": value if first_value is None else first_value,
        "raised_ms": first_ms,
        "cleared_ms": None,
        "closed_ms": None,
        "acknowledged_ms": None,
        "acknowledged_by": None,
        "cleared_by": None,
        "raised_reason": reason,
        "cleared_reason": None,
        "acknowledged_reason": None,
        "created_at": utcnow(),
    }
    update: dict[str, Any] = {"$setOnInsert": on_insert}
    if repeats:
        update["$inc"] = {"count": repeats}
        update["$set"] = {"last_value": value, "last_ms": ts_ms}
    else:
        on_insert.update({"count": 1, "last_value": value, "last_ms": ts_ms})
    return {"active_key": key}, update


def clear_update(*, at_ms: int, by: str, reason: str | None, value: Any = None) -> dict[str, Any]:
    """The update that clears an active alarm (filter on its `active_key` or `_id`+status)."""
    cleared_key = f"cleared:{ObjectId()}"
    changes: dict[str, Any] = {
        "status": AlarmStatus.CLEARED.value,
        "active_key": cleared_key,
        "cleared_ms": at_ms,
        "closed_ms": now_ms(),
        "cleared_by": by,
        "cleared_reason": reason,
    }
    if value is not None:
        changes["last_value"] = value
    return {"$set": changes}


def ack_update(*, at_ms: int, by: str, reason: str | None) -> dict[str, Any]:
    """The update that acknowledges an alarm."""
    changes = {
        "acknowledged": True,
        "acknowledged_ms": at_ms,
        "acknowledged_by": by,
        "acknowledged_reason": reason,
    }
    return {"$set": changes}
