"""Alarms as people see them: list, count, acknowledge and clear by hand."""

from __future__ import annotations

from typing import Any

from odmantic import AIOEngine
from pymongo import ReturnDocument

from app.alerts import access, alarms
from app.alerts.exceptions import AlarmAlreadyCleared, AlarmNotFound
from app.alerts.models import Alarm, AlarmEvent, AlarmStatus, AlertRule, Severity
from app.alerts.notifier import Notifier
from app.alerts.schemas import AlarmCounts, AlarmFilters, StateCounts
from app.auth.principal import Principal
from app.catalog import crud
from app.catalog.models import Device
from app.catalog.permissions.models import Role
from app.core import db
from app.core.errors import NotFound
from app.core.pagination import PageParams, and_filters, find_page


def _filters(filters_in: AlarmFilters) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = crud.equal_to(
        status=filters_in.status,
        severity=filters_in.severity,
        device_id=filters_in.device_id,
        rule_id=filters_in.rule_id,
    )
    if filters_in.acknowledged is not None:
        parts.append({"acknowledged": filters_in.acknowledged})
    if filters_in.folder_id is not None:
        parts.append({"folder_path": {"$in": [filters_in.folder_id]}})
    return parts


async def list_(
    engine: AIOEngine, *, principal: Principal, page: PageParams, filters_in: AlarmFilters
) -> tuple[list[Alarm], str | None]:
    """One page of the alarms of devices the caller can see (a device key: its own)."""
    await crud.require_visible_folder(engine, principal=principal, folder_id=filters_in.folder_id)
    readable = await access.readable_alarms(engine, principal=principal)
    return await find_page(engine, Alarm, page, readable, *_filters(filters_in))


async def counts(engine: AIOEngine, *, principal: Principal, folder_id: str | None) -> AlarmCounts:
    """Alarms the caller can see, by severity and state (in one folder's subtree if given)."""
    await crud.require_visible_folder(engine, principal=principal, folder_id=folder_id)
    readable = await access.readable_alarms(engine, principal=principal)
    scope = [{"folder_path": {"$in": [folder_id]}}] if folder_id else []
    by_severity = {severity: StateCounts() for severity in Severity}
    total = 0
    # One string key (the embedded server does not evaluate a compound `$group` _id), and one
    # pass per acknowledged value (no boolean-to-string conversion both servers agree on).
    key = {"$concat": ["$severity", "|", "$status"]}
    for acked in (False, True):
        query = and_filters(readable, *scope, {"acknowledged": acked})
        pipeline = [{"$match": query}, {"$group": {"_id": key, "n": {"$sum": 1}}}]
        suffix = "acknowledged" if acked else "unacknowledged"
        async for row in db.collection(engine, Alarm).aggregate(pipeline):
            severity, _, status = str(row["_id"]).partition("|")
            field = f"{status}_{suffix}"
            if severity not in by_severity or field not in StateCounts.model_fields:
                continue
            counts_ = by_severity[Severity(severity)]
            setattr(counts_, field, getattr(counts_, field) + int(row["n"]))
            total += int(row["n"])
    return AlarmCounts(total=total, by_severity=by_severity)


async def active_by_severity(
    engine: AIOEngine, *, principal: Principal, folder_id: str | None, product_id: str | None
) -> dict[str, int]:
    """Active alarms the caller can see, by severity: the fleet statistics' alarm counter."""
    readable = await access.readable_alarms(engine, principal=principal)
    scope: list[dict[str, Any]] = [{"status": "active"}]
    if folder_id:
        scope.append({"folder_path": {"$in": [folder_id]}})
    if product_id:
        scope.append({"product_id": product_id})
    pipeline = [
        {"$match": and_filters(readable, *scope)},
        {"$group": {"_id": "$severity", "n": {"$sum": 1}}},
    ]
    return {
        str(row["_id"]): int(row["n"])
        async for row in db.collection(engine, Alarm).aggregate(pipeline)
    }


async def get_for(engine: AIOEngine, *, principal: Principal, alarm_id: str, role: Role) -> Alarm:
    """An alarm of a device the caller holds `role` on (404 when it cannot see the device)."""
    alarm = await db.find_by_id(engine, Alarm, alarm_id)
    if alarm is None:
        raise AlarmNotFound()
    try:
        await crud.get_for(
            engine, Device, principal=principal, resource_id=alarm.device_id, role=role
        )
    except NotFound:
        raise AlarmNotFound() from None
    return alarm


async def _rule_of(engine: AIOEngine, alarm: Alarm) -> AlertRule | None:
    return await db.find_by_id(engine, AlertRule, alarm.rule_id)


async def acknowledge(
    engine: AIOEngine, *, principal: Principal, alarm: Alarm, reason: str | None, notifier: Notifier
) -> Alarm:
    """Acknowledge an alarm (a no-op if it already is); notifies when the rule asks to."""
    doc = await db.collection(engine, Alarm).find_one_and_update(
        {"_id": alarm.id, "acknowledged": False},
        alarms.ack_update(at_ms=alarms.now_ms(), by=principal.uid, reason=reason),
        return_document=ReturnDocument.AFTER,
    )
    if doc is None:
        return await _reload(engine, alarm)
    rule = await _rule_of(engine, alarm)
    if rule is not None:
        await notifier.transition(rule, doc, AlarmEvent.ACKNOWLEDGED)
    return Alarm.model_validate_doc(doc)


async def clear(
    engine: AIOEngine, *, principal: Principal, alarm: Alarm, reason: str | None, notifier: Notifier
) -> Alarm:
    """Clear an active alarm by hand (409 if it is cleared already)."""
    doc = await db.collection(engine, Alarm).find_one_and_update(
        {"_id": alarm.id, "status": AlarmStatus.ACTIVE.value},
        alarms.clear_update(at_ms=alarms.now_ms(), by=principal.uid, reason=reason),
        return_document=ReturnDocument.AFTER,
    )
    if doc is None:
        raise AlarmAlreadyCleared()
    rule = await _rule_of(engine, alarm)
    if rule is not None:
        await notifier.transition(rule, doc, AlarmEvent.CLEARED)
    return Alarm.model_validate_doc(doc)


async def clear_rule_alarms(engine: AIOEngine, *, rule: AlertRule, reason: str) -> int:
    """Clear every active alarm of a rule (it was deleted or disabled); returns how many."""
    coll = db.collection(engine, Alarm)
    cleared = 0
    cursor = coll.find({"rule_id": str(rule.id), "status": AlarmStatus.ACTIVE.value}, {"_id": 1})
    async for row in cursor:
        result = await coll.update_one(
            {"_id": row["_id"], "status": AlarmStatus.ACTIVE.value},
            alarms.clear_update(at_ms=alarms.now_ms(), by=alarms.SYSTEM, reason=reason),
        )
        cleared += result.modified_count
    return cleared


async def _reload(engine: AIOEngine, alarm: Alarm) -> Alarm:
    found = await db.find_by_id(engine, Alarm, str(alarm.id))
    if found is None:
        raise AlarmNotFound()
    return found
