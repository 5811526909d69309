"""Alert evaluation after the group-commit flush: a `FlushListener` of the ingest batcher.

Per flush: one rule lookup for all its devices (from `RuleCache`), the pure conditions of
`conditions`, then one write for the states that must survive a crash now, and one
operation per alarm change. Nothing runs before the readings are stored.

Durable state and its loss mode: every (rule, device) state lives in `alert_states`. What the
beat and a restart need (a `for_s` that started, an alarm believed active) is written before
the flush's alarm changes; incremental statistics (anomaly mean/variance, rate windows) are
written every `ALERT_STATE_FLUSH_S` and on shutdown. An API process that crashes loses at most
that many seconds of statistics (the anomaly warm-up counts those values again; a rate window
misses them). When one device's readings reach several API processes, each keeps its own
copy in memory and the last write wins: conditions stay correct for each process's readings,
and alarm creation stays unique (`alarms` module).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from odmantic import AIOEngine
from pymongo import ReplaceOne, ReturnDocument
from pymongo.errors import DuplicateKeyError

from app.alerts import alarms
from app.alerts.cache import DeviceRules, RuleCache
from app.alerts.conditions import Change, Compiled, Point, State, evaluate, numeric
from app.alerts.models import AlarmEvent, AlarmStatus, ConditionType, active_key, state_id
from app.alerts.notifier import Notifier
from app.core import collections
from app.core.db import MongoDatabase, database
from app.core.metrics import ALERT_EVALUATION_LAG, ALERT_EVALUATIONS
from app.core.models import epoch_ms
from app.readings.batcher import DeviceFlush

logger = logging.getLogger(__name__)

_CHUNK = 1000
_DURABLE = ("active", "pending_ms")


def _version(rule: Compiled) -> int:
    return epoch_ms(rule.rule.updated_at)


class AlertEvaluator:
    """Evaluates each flush's readings against the rules of their devices (see module)."""

    def __init__(
        self,
        engine: AIOEngine,
        *,
        rules: RuleCache,
        notifier: Notifier,
        state_flush_s: float,
        state_cache_max: int,
    ) -> None:
        self.engine = engine
        self.rules = rules
        self.notifier = notifier
        self.state_flush_s = state_flush_s
        self.state_cache_max = state_cache_max
        self._states: dict[str, State] = {}
        self._dirty: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def db(self) -> MongoDatabase:
        """The raw database."""
        return database(self.engine)

    def start(self) -> None:
        """Start writing incremental state every ALERT_STATE_FLUSH_S."""
        self._task = asyncio.create_task(self._persist_loop(), name="alert-state-writer")

    async def stop(self) -> None:
        """Stop the writer and write what is left."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.persist()

    async def _persist_loop(self) -> None:
        while True:
            await asyncio.sleep(self.state_flush_s)
            try:
                await self.persist()
            except Exception as exc:
                logger.warning("alert state not written", extra={"error": type(exc).__name__})

    async def persist(self, ids: set[str] | None = None) -> None:
        """Write dirty states (or just `ids`) to MongoDB, whole documents, one bulk write."""
        chosen = self._dirty if ids is None else ids & self._dirty
        if not chosen:
            return
        ops = [
            ReplaceOne({"_id": sid}, self._states[sid], upsert=True)
            for sid in chosen
            if sid in self._states
        ]
        self._dirty -= chosen
        for start in range(0, len(ops), _CHUNK):
            await self.db[collections.ALERT_STATES].bulk_write(
                ops[start : start + _CHUNK], ordered=False
            )

    async def __call__(self, flushed: Sequence[DeviceFlush]) -> None:
        """Evaluate one flush (the batcher calls this after the readings are stored)."""
        started = time.perf_counter()
        by_device = await self.rules.for_devices(self.engine, [f.device_id for f in flushed])
        work = [
            (f, by_device[f.device_id])
            for f in flushed
            if by_device.get(f.device_id) and by_device[f.device_id].rules
        ]
        if not work:
            return
        await self._load_states(work)
        now = alarms.now_ms()
        urgent: set[str] = set()
        changes: list[tuple[Compiled, DeviceRules, list[Change]]] = []
        no_data: list[tuple[Compiled, DeviceRules, int]] = []
        counts: dict[str, int] = {}
        for flush, device_rules in work:
            ts_ms = [round(doc["ts"].timestamp() * 1000) for doc in flush.docs]
            points: dict[str | None, list[Point]] = {}
            for rule in device_rules.rules:
                if rule.type is ConditionType.NO_DATA:
                    newest = self._newest(flush, ts_ms, rule.key)
                    if newest is not None:
                        no_data.append((rule, device_rules, newest))
                    continue
                pts = points.get(rule.key)
                if pts is None:
                    pts = points[rule.key] = self._points(flush, ts_ms, rule.key)
                sid = state_id(rule.id, device_rules.device.id)
                state = self._states[sid]
                before = tuple(state.get(k) for k in _DURABLE)
                found = evaluate(rule, state, pts, now_ms=now)
                if found or tuple(state.get(k) for k in _DURABLE) != before:
                    urgent.add(sid)
                    self._dirty.add(sid)
                elif rule.type is not ConditionType.THRESHOLD:
                    # Statistics change with every reading: written every ALERT_STATE_FLUSH_S.
                    # A threshold state changes durably only with its transitions (above).
                    self._dirty.add(sid)
                if found:
                    changes.append((rule, device_rules, found))
                counts[rule.type.value] = counts.get(rule.type.value, 0) + len(pts)
        for condition, n in counts.items():
            ALERT_EVALUATIONS.labels(condition=condition).inc(n)
        await self.persist(urgent)
        if changes or no_data:
            await asyncio.gather(
                *(self._apply(rule, dr, found) for rule, dr, found in changes),
                self._clear_no_data(no_data),
            )
        if len(self._states) > self.state_cache_max:
            await self.persist()
            self._states.clear()
        ALERT_EVALUATION_LAG.observe(time.perf_counter() - started)

    @staticmethod
    def _points(flush: DeviceFlush, ts_ms: list[int], key: str | None) -> list[Point]:
        if key is None:
            return [(ts, None) for ts in ts_ms]
        return [
            (ts, value if type(value) is float else numeric(value))
            for ts, doc in zip(ts_ms, flush.docs, strict=True)
            if (value := doc["m"].get(key)) is not None
        ]

    @staticmethod
    def _newest(flush: DeviceFlush, ts_ms: list[int], key: str | None) -> int | None:
        if key is None:
            return ts_ms[-1] if ts_ms else None
        seen = [ts for ts, doc in zip(ts_ms, flush.docs, strict=True) if key in doc["m"]]
        return max(seen) if seen else None

    async def _load_states(self, work: list[tuple[DeviceFlush, DeviceRules]]) -> None:
        wanted: dict[str, Compiled] = {}
        for _, device_rules in work:
            for rule in device_rules.rules:
                if rule.type is ConditionType.NO_DATA:
                    continue
                sid = state_id(rule.id, device_rules.device.id)
                state = self._states.get(sid)
                if state is None or state.get("v") != _version(rule):
                    wanted[sid] = rule
        if not wanted:
            return
        ids = list(wanted)
        stored: dict[str, State] = {}
        for start in range(0, len(ids), _CHUNK):
            cursor = self.db[collections.ALERT_STATES].find(
                {"_id": {"$in": ids[start : start + _CHUNK]}}
            )
            async for doc in cursor:
                stored[doc["_id"]] = doc
        for sid, rule in wanted.items():
            doc = stored.get(sid)
            if doc is None or doc.get("v") != _version(rule):
                rule_id, device_id = sid.split(":")
                doc = {"_id": sid, "rule_id": rule_id, "device_id": device_id, "v": _version(rule)}
            self._states[sid] = doc

    async def _apply(self, rule: Compiled, device_rules: DeviceRules, found: list[Change]) -> None:
        """Store one (rule, device)'s changes in order: runs of raises are one upsert."""
        device = device_rules.device
        run: list[Change] = []
        for change in [*found, None]:
            if change is not None and change.kind == "raise":
                run.append(change)
                continue
            if run:
                await self._raise(rule, device, run)
                run = []
            if change is not None:
                await self._clear(rule, device, change)

    async def _raise(self, rule: Compiled, device: alarms.DeviceInfo, run: list[Change]) -> None:
        first, last = run[0], run[-1]
        query, update = alarms.raise_op(
            rule.rule,
            device,
            ts_ms=last.ts_ms,
            value=last.value,
            first_value=first.value,
            first_ms=first.ts_ms,
            repeats=len(run),
            reason=_reason(rule, first),
        )
        coll = self.db[collections.ALARMS]
        try:
            result = await coll.update_one(query, update, upsert=True)
        except DuplicateKeyError:
            # Another process inserted the same alarm a moment ago: count on it instead.
            result = await coll.update_one(query, update, upsert=True)
        if result.upserted_id is None:
            return
        doc = await coll.find_one({"_id": result.upserted_id})
        if doc is not None:
            await self.notifier.transition(rule.rule, doc, AlarmEvent.RAISED)

    async def _clear(self, rule: Compiled, device: alarms.DeviceInfo, change: Change) -> None:
        doc = await self.db[collections.ALARMS].find_one_and_update(
            {"active_key": active_key(rule.id, device.id)},
            alarms.clear_update(
                at_ms=change.ts_ms,
                by=alarms.SYSTEM,
                reason="clear condition held",
                value=change.value,
            ),
            return_document=ReturnDocument.AFTER,
        )
        if doc is not None:
            await self.notifier.transition(rule.rule, doc, AlarmEvent.CLEARED)

    async def _clear_no_data(self, found: list[tuple[Compiled, DeviceRules, int]]) -> None:
        """Data arrived: clear the no_data alarms of these devices (one query finds them)."""
        if not found:
            return
        keys = {active_key(rule.id, dr.device.id): (rule, ts) for rule, dr, ts in found}
        coll = self.db[collections.ALARMS]
        active = [
            doc async for doc in coll.find({"active_key": {"$in": list(keys)}}, {"active_key": 1})
        ]
        for doc in active:
            rule, ts = keys[doc["active_key"]]
            cleared = await coll.find_one_and_update(
                {"$and": [{"_id": doc["_id"]}, {"status": AlarmStatus.ACTIVE.value}]},
                alarms.clear_update(at_ms=ts, by=alarms.SYSTEM, reason="data arrived"),
                return_document=ReturnDocument.AFTER,
            )
            if cleared is not None:
                await self.notifier.transition(rule.rule, cleared, AlarmEvent.CLEARED)


def _reason(rule: Compiled, change: Change) -> str:
    cond = rule.rule.condition
    if rule.type is ConditionType.THRESHOLD:
        held = f" for {cond['for_s']} s" if cond.get("for_s") else ""
        return f"{cond['metric']} {cond['op']} {cond['value']}{held} (value {change.value})"
    if rule.type is ConditionType.ANOMALY:
        return f"{cond['metric']} |z| > {cond['k']} (value {change.value})"
    if rule.type is ConditionType.RATE:
        if cond.get("n") is not None:
            return f"more than {cond['n']} readings in {cond['window_s']} s"
        return f"{cond['metric']} changed by more than {cond['delta']} in {cond['window_s']} s"
    return "condition held"
