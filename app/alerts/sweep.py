"""The beat's alert sweep: no_data deadlines, for_s expiry, retention, stuck events, digests.

Runs every ALERTS_SWEEP_INTERVAL_S under a lock (the worker task takes it), so an alarm fires
at most that long after its deadline. It reads only what has a deadline:
- no_data: the enabled no_data rules, then the devices in each rule's scope, page by page by
  `_id` (served by the `product_id`, `folder_path` and `_id` indexes), with their latest
  values and presence (two more queries per page); an alarm is raised for each device silent
  for `after_s` that has none yet;
- for_s: the states whose `due_ms` has passed (indexed), page by page.
Raises here are idempotent upserts that add nothing to an alarm that exists.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo.errors import BulkWriteError, DuplicateKeyError

from app.alerts import alarms, digest, events
from app.alerts.alarms import DeviceInfo
from app.alerts.context import AlertsContext
from app.alerts.models import AlarmEvent, AlarmStatus, AlertRule, ConditionType, active_key
from app.alerts.notifier import TRANSITIONS_KEY
from app.core import collections
from app.core.models import epoch_ms, parse_object_id
from app.readings.models import field_key

logger = logging.getLogger(__name__)

MAX_PAGES = 1000


def _scope_filter(rule: AlertRule) -> dict[str, Any]:
    if rule.scope_type == "device":
        oid = parse_object_id(rule.scope_id)
        return {"_id": {"$in": [oid] if oid else []}}
    if rule.scope_type == "product":
        return {"product_id": rule.scope_id}
    return {"folder_path": {"$in": [rule.scope_id]}}


def _ms(value: Any) -> int | None:
    if isinstance(value, datetime):
        return epoch_ms(value)
    if isinstance(value, str):
        try:
            return epoch_ms(datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


def _last_heard(device: dict[str, Any], latest: dict[str, Any] | None, key: str | None) -> int:
    """When the device was last heard from (for `key`: its last value of that metric)."""
    seen: list[int] = []
    metrics = (latest or {}).get("m") or {}
    if key is None:
        seen.extend(t for v in metrics.values() if (t := _ms(v.get("ts"))) is not None)
        presence = device.get("presence") or {}
        if (t := _ms(presence.get("last_seen_at"))) is not None:
            seen.append(t)
    elif key in metrics and (t := _ms(metrics[key].get("ts"))) is not None:
        seen.append(t)
    if not seen:
        # Never heard from: the deadline counts from its creation.
        created = _ms(device.get("created_at"))
        return created if created is not None else 0
    return max(seen)


class Sweeper:
    """One sweep run (see module); `now_ms` is injectable so tests need no sleeps."""

    def __init__(
        self,
        ctx: AlertsContext,
        *,
        now_ms: int,
        enqueue: Callable[[str], None],
        enqueue_webhook: Callable[[str], None] | None = None,
        enqueue_email: Callable[[str], None] | None = None,
    ) -> None:
        self.ctx = ctx
        self.now_ms = now_ms
        self.enqueue = enqueue
        self.enqueue_webhook = enqueue_webhook
        self.enqueue_email = enqueue_email
        self.db = ctx.db
        self.page = ctx.settings.alerts_sweep_page_size
        self.counts = {"devices": 0, "raised": 0, "expired": 0, "deleted": 0, "requeued": 0}
        self.counts["digests"] = 0

    def run(self) -> dict[str, int]:
        """Everything once."""
        self.no_data()
        self.for_s_expiry()
        self.retention()
        self.requeue_events()
        self.digests()
        return self.counts

    def digests(self) -> None:
        """Email what rules with a digest held back, once their interval is over."""
        # Without a way to enqueue, the outbox beat sends the entries after its grace period.
        enqueue = self.enqueue_email or (lambda _outbox_id: None)
        self.counts["digests"] += digest.send_due(self.ctx, page=self.page, enqueue_email=enqueue)

    def no_data(self) -> None:
        """Raise no_data alarms for devices silent past their rules' `after_s`."""
        rules = self.db[collections.ALERT_RULES].find(
            {"condition_type": ConditionType.NO_DATA.value, "enabled": True}
        )
        for rule_doc in rules:
            rule = AlertRule.model_validate_doc(rule_doc)
            self._no_data_rule(rule)

    def _no_data_rule(self, rule: AlertRule) -> None:
        after_ms = int(rule.condition["after_s"]) * 1000
        metric = rule.condition.get("metric")
        key = field_key(metric) if metric else None
        scope = _scope_filter(rule)
        last_id: ObjectId | None = None
        projection = {"name": 1, "product_id": 1, "folder_path": 1, "presence": 1, "created_at": 1}
        for _ in range(MAX_PAGES):
            query = scope if last_id is None else {"$and": [scope, {"_id": {"$gt": last_id}}]}
            page = list(
                self.db[collections.DEVICES].find(query, projection).sort("_id", 1).limit(self.page)
            )
            if not page:
                return
            last_id = page[-1]["_id"]
            self.counts["devices"] += len(page)
            ids = [str(d["_id"]) for d in page]
            latest = {
                doc["_id"]: doc
                for doc in self.db[collections.DEVICE_LATEST].find({"_id": {"$in": ids}}, {"m": 1})
            }
            overdue = [
                (d, heard)
                for d in page
                if self.now_ms - (heard := _last_heard(d, latest.get(str(d["_id"])), key))
                >= after_ms
            ]
            if not overdue:
                continue
            keys = [active_key(str(rule.id), str(d["_id"])) for d, _ in overdue]
            alarmed = {
                doc["active_key"]
                for doc in self.db[collections.ALARMS].find(
                    {"active_key": {"$in": keys}}, {"active_key": 1}
                )
            }
            fresh = [
                (device, heard)
                for device, heard in overdue
                if active_key(str(rule.id), str(device["_id"])) not in alarmed
            ]
            self._raise_many(rule, fresh, after_ms=after_ms)

    def _raise_many(
        self, rule: AlertRule, found: list[tuple[dict[str, Any], int]], *, after_ms: int
    ) -> None:
        """Insert the alarms of silent devices at once (the unique key refuses duplicates)."""
        if not found:
            return
        docs = []
        for device, heard in found:
            info = DeviceInfo(
                id=str(device["_id"]),
                name=device.get("name"),
                product_id=str(device.get("product_id") or ""),
                folder_path=tuple(device.get("folder_path") or ()),
            )
            silent_s = (self.now_ms - heard) // 1000
            reason = f"no data for {silent_s} s (limit {rule.condition['after_s']} s)"
            _, update = alarms.raise_op(
                rule, info, ts_ms=heard + after_ms, value=None, repeats=0, reason=reason
            )
            docs.append({"active_key": active_key(str(rule.id), info.id), **update["$setOnInsert"]})
        refused: set[int] = set()
        try:
            self.db[collections.ALARMS].insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            # Raised meanwhile by someone else (duplicate active key): theirs stands.
            refused = {int(e["index"]) for e in (exc.details or {}).get("writeErrors", [])}
        for position, doc in enumerate(docs):
            if position not in refused:
                self._raised(rule, doc)

    def for_s_expiry(self) -> None:
        """Raise threshold alarms whose condition has held for `for_s` with no newer reading."""
        states = self.db[collections.ALERT_STATES]
        rules: dict[str, AlertRule | None] = {}
        for _ in range(MAX_PAGES):
            page = list(
                states.find({"due_ms": {"$lte": self.now_ms}}).sort("due_ms", 1).limit(self.page)
            )
            if not page:
                return
            for state in page:
                # Only this state as it was read: a newer evaluation wins.
                states.update_one(
                    {"_id": state["_id"], "due_ms": state["due_ms"]},
                    {"$set": {"active": True}, "$unset": {"pending_ms": "", "due_ms": ""}},
                )
                rule_id = state.get("rule_id", "")
                if rule_id not in rules:
                    oid = parse_object_id(rule_id)
                    doc = self.db[collections.ALERT_RULES].find_one({"_id": oid}) if oid else None
                    rules[rule_id] = AlertRule.model_validate_doc(doc) if doc else None
                rule = rules[rule_id]
                if rule is None or not rule.enabled:
                    continue
                device = self._device(state.get("device_id", ""))
                if device is None:
                    continue
                self.counts["expired"] += 1
                self._raise(
                    rule,
                    device,
                    ts_ms=int(state["due_ms"]),
                    value=state.get("last_v"),
                    reason=f"condition held for {rule.condition.get('for_s')} s",
                )

    def _device(self, device_id: str) -> DeviceInfo | None:
        oid = parse_object_id(device_id)
        doc = self.db[collections.DEVICES].find_one({"_id": oid}) if oid else None
        if doc is None:
            return None
        return DeviceInfo(
            id=device_id,
            name=doc.get("name"),
            product_id=str(doc.get("product_id") or ""),
            folder_path=tuple(doc.get("folder_path") or ()),
        )

    def _raise(
        self, rule: AlertRule, device: DeviceInfo, *, ts_ms: int, value: Any, reason: str
    ) -> None:
        query, update = alarms.raise_op(
            rule, device, ts_ms=ts_ms, value=value, repeats=0, reason=reason
        )
        coll = self.db[collections.ALARMS]
        try:
            result = coll.update_one(query, update, upsert=True)
        except DuplicateKeyError:
            return  # raised by someone else a moment ago
        if result.upserted_id is None:
            return
        doc = coll.find_one({"_id": result.upserted_id})
        if doc is not None:
            self._raised(rule, doc)

    def _raised(self, rule: AlertRule, doc: dict[str, Any]) -> None:
        """Count a new alarm and record (and enqueue) its notification."""
        self.counts["raised"] += 1
        try:
            self.ctx.redis.hincrby(TRANSITIONS_KEY, f"raised|{rule.severity.value}", 1)
        except Exception as exc:
            logger.warning("alarm transition not counted", extra={"error": type(exc).__name__})
        if not events.wanted(rule, AlarmEvent.RAISED):
            return
        event = events.event_doc(rule, doc, AlarmEvent.RAISED)
        try:
            self.db[collections.ALERT_EVENTS].insert_one(event)
        except DuplicateKeyError:
            return
        self.enqueue(event["_id"])

    def retention(self) -> None:
        """Delete cleared alarms (and their events and deliveries) past ALARM_RETENTION_DAYS."""
        cutoff = self.now_ms - self.ctx.settings.alarm_retention_days * 86_400_000
        old = [
            doc["_id"]
            for doc in self.db[collections.ALARMS]
            .find({"status": AlarmStatus.CLEARED.value, "closed_ms": {"$lt": cutoff}}, {"_id": 1})
            .limit(self.page)
        ]
        if not old:
            return
        hex_ids = [str(oid) for oid in old]
        self.db[collections.ALERT_EVENTS].delete_many({"alarm_id": {"$in": hex_ids}})
        self.db[collections.WEBHOOK_DELIVERIES].delete_many({"alarm_id": {"$in": hex_ids}})
        self.db[collections.NOTIFICATION_LOG].delete_many({"alarm_id": {"$in": hex_ids}})
        result = self.db[collections.ALARMS].delete_many({"_id": {"$in": old}})
        self.counts["deleted"] += result.deleted_count

    def requeue_events(self) -> None:
        """Re-enqueue events no worker took within ALERT_NOTIFY_GRACE_S (broker was away)."""
        cutoff = self.now_ms - self.ctx.settings.alert_notify_grace_s * 1000
        stuck = self.db[collections.ALERT_EVENTS].find(
            {"status": events.PENDING, "created_ms": {"$lt": cutoff}}, {"_id": 1}
        )
        for doc in stuck.limit(self.page):
            self.enqueue(doc["_id"])
            self.counts["requeued"] += 1
        if self.enqueue_webhook is None:
            return
        # Webhook attempts whose retry message was lost (broker restart), or whose worker died
        # mid-attempt (lease over): the delivery task claims each at most once at a time.
        deliveries = self.db[collections.WEBHOOK_DELIVERIES]
        for due in (
            {"status": "pending", "next_ms": {"$lt": cutoff}},
            {"status": "sending", "lease_ms": {"$lt": self.now_ms}},
        ):
            for doc in deliveries.find(due, {"_id": 1}).limit(self.page):
                self.enqueue_webhook(doc["_id"])
                self.counts["requeued"] += 1
