"""Group commit: readings of concurrent requests are written with one `insert_many` per flush.

A flush starts `INGEST_FLUSH_INTERVAL_MS` after the first waiting reading arrived, or at once
when `INGEST_FLUSH_MAX_DOCS` readings wait; at most `INGEST_FLUSHES_IN_FLIGHT` flushes write at
once (later readings wait, and are written together). With `INGEST_FLUSH_WHEN_IDLE` a flush
also starts at once when no other is being written, and as soon as the one being written
ends: readings are never held back while the database is idle, and under load they gather
while a flush is written, so flushes grow with the load by themselves.

Each request awaits a future that resolves only after its readings are written, so every 202
answer is durable. After the insert, the same flush updates `device_latest` (one bulk write),
refreshes device presence (throttled) and records the answers of requests that carried an
`Idempotency-Key`.

Partial failures are reported honestly: documents the server refused are named by
`BulkWriteError` and returned to their request as failed positions; an error whose outcome is
unknown (connection lost, write concern) fails every request of the flush with 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from bson import ObjectId
from odmantic import AIOEngine
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError, PyMongoError

from app.catalog import presence
from app.core.config import Settings
from app.core.metrics import INGEST_FLUSH_READINGS, INGEST_RECONCILIATIONS
from app.core.models import utcnow
from app.readings import repository
from app.readings.context import DeviceContext, DeviceContextCache
from app.readings.exceptions import IngestOutcomeUnknown, IngestUnavailable
from app.readings.latest_cache import LatestValues
from app.readings.models import field_key

logger = logging.getLogger(__name__)

_MEMO_LIMIT = 100_000


@dataclass(slots=True)
class WriteOutcome:
    """What happened to one request's readings: positions not written, answer recorded."""

    failed: list[int] = field(default_factory=list)
    key_recorded: bool = False


@dataclass(frozen=True, slots=True)
class DeviceFlush:
    """What one flush stored for one device: its readings in time order."""

    device_id: str
    product_id: str
    docs: list[dict[str, Any]]


class FlushListener(Protocol):
    """Told, after a flush has written them, which readings were stored (once per flush).

    Listeners (alert evaluation, live fan-out) run in the background after the requests
    are answered: they never delay ingest, and never see a reading that was not stored.
    """

    async def __call__(self, flushed: Sequence[DeviceFlush]) -> None:
        """React to the stored readings; exceptions are logged, never raised to ingest."""


@dataclass(slots=True)
class _Item:
    docs: list[dict[str, Any]]
    context: DeviceContext
    future: asyncio.Future[WriteOutcome]
    enqueued_at: float
    key_id: ObjectId | None
    response: dict[str, Any] | None


class IngestBatcher:
    """The in-process group-commit writer; one per app, started and stopped in the lifespan."""

    def __init__(
        self,
        engine: AIOEngine,
        *,
        flush_interval_s: float,
        max_docs: int,
        presence_throttle_s: float,
        cache: DeviceContextCache | None = None,
        max_in_flight: int = 4,
        listeners: Sequence[FlushListener] = (),
        reconcile_timeout_s: float = 15.0,
        latest_values: LatestValues | None = None,
        flush_when_idle: bool = False,
    ) -> None:
        self.engine = engine
        # Redis copies of device_latest, offered the same values in the same flush.
        self.latest_values = latest_values
        self.flush_when_idle = flush_when_idle
        self.reconcile_timeout_s = reconcile_timeout_s
        self.listeners = tuple(listeners)
        self._notifications: set[asyncio.Task[None]] = set()
        self.flush_interval_s = flush_interval_s
        self.max_docs = max_docs
        self.presence_throttle_s = presence_throttle_s
        self.cache = cache
        self._queue: list[_Item] = []
        self._queued_docs = 0
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._presence_memo: dict[str, float] = {}
        self._latest_known: set[str] = set()
        self.flush_count = 0

    @classmethod
    def from_settings(
        cls,
        engine: AIOEngine,
        settings: Settings,
        *,
        cache: DeviceContextCache | None = None,
        listeners: Sequence[FlushListener] = (),
        latest_values: LatestValues | None = None,
    ) -> IngestBatcher:
        """A batcher tuned by the `INGEST_*` and `PRESENCE_THROTTLE_S` settings."""
        return cls(
            engine,
            flush_interval_s=settings.ingest_flush_interval_ms / 1000,
            max_docs=settings.ingest_flush_max_docs,
            presence_throttle_s=settings.presence_throttle_s,
            cache=cache,
            max_in_flight=settings.ingest_flushes_in_flight,
            listeners=listeners,
            reconcile_timeout_s=settings.ingest_reconcile_timeout_s,
            latest_values=latest_values,
            flush_when_idle=settings.ingest_flush_when_idle,
        )

    @property
    def queued(self) -> int:
        """Readings waiting for the next flush."""
        return self._queued_docs

    def start(self) -> None:
        """Start the flush loop on the running event loop."""
        self._task = asyncio.create_task(self._run(), name="ingest-batcher")

    async def stop(self) -> None:
        """Stop taking readings and write everything already accepted into the queue."""
        self._closing = True
        self._wake.set()
        self._full.set()
        if self._task is not None:
            await self._task
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
        await self.listeners_idle()

    async def listeners_idle(self) -> None:
        """Wait until the listeners have been told of every flush so far (their work runs
        after the flush's readings are acknowledged)."""
        while self._notifications:
            await asyncio.gather(*self._notifications, return_exceptions=True)

    async def submit(
        self,
        docs: list[dict[str, Any]],
        context: DeviceContext,
        *,
        key_id: ObjectId | None = None,
        response: dict[str, Any] | None = None,
    ) -> WriteOutcome:
        """Queue readings and wait until they are written (raises IngestUnavailable)."""
        if self._closing or self._task is None:
            raise IngestUnavailable("The service is shutting down; retry shortly")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[WriteOutcome] = loop.create_future()
        self._queue.append(_Item(docs, context, future, loop.time(), key_id, response))
        self._queued_docs += len(docs)
        self._wake.set()
        if self._queued_docs >= self.max_docs:
            self._full.set()
        # Shielded: a client that goes away does not cancel the write others share.
        return await asyncio.shield(future)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            deadline = self._queue[0].enqueued_at + self.flush_interval_s
            while not self._closing and self._queued_docs < self.max_docs:
                if self.flush_when_idle and not self._flushes:
                    break  # the database is idle: holding the readings back gains nothing
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):  # no task per wait, unlike wait_for
                        await self._full.wait()
            items = self._take()
            await self._slots.acquire()
            task = asyncio.create_task(self._flush(items))
            self._flushes.add(task)
            task.add_done_callback(self._flush_done)

    def _flush_done(self, task: asyncio.Task[None]) -> None:
        self._flushes.discard(task)
        self._slots.release()
        if self.flush_when_idle and not self._flushes:
            self._full.set()  # wake the loop: what gathered meanwhile goes now

    def _take(self) -> list[_Item]:
        taken: list[_Item] = []
        size = 0
        while self._queue and (not taken or size + len(self._queue[0].docs) <= self.max_docs):
            item = self._queue.pop(0)
            taken.append(item)
            size += len(item.docs)
        self._queued_docs -= size
        return taken

    async def _flush(self, items: list[_Item]) -> None:
        try:
            await self._write(items)
        except Exception:  # never leave a request waiting forever
            logger.exception("ingest flush failed")
            for item in items:
                if not item.future.done():
                    item.future.set_exception(IngestUnavailable("Readings could not be stored"))

    async def _write(self, items: list[_Item]) -> None:
        self.flush_count += 1
        docs = [doc for item in items for doc in item.docs]
        INGEST_FLUSH_READINGS.observe(len(docs))
        try:
            refused = await self._store(docs)
        except IngestOutcomeUnknown as exc:
            for item in items:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        outcomes: list[WriteOutcome] = []
        written: list[dict[str, Any]] = []
        position = 0
        for item in items:
            failed = [i for i in range(len(item.docs)) if position + i in refused]
            outcomes.append(WriteOutcome(failed=failed))
            skip = set(failed)
            written.extend(d for i, d in enumerate(item.docs) if i not in skip)
            position += len(item.docs)
        results = await asyncio.gather(
            self._update_latest(written),
            self._update_presence(items),
            self._record_answers(items, outcomes),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                logger.error("ingest side effect failed", extra={"error": repr(result)})
        for item, outcome in zip(items, outcomes, strict=True):
            if not item.future.done():
                item.future.set_result(outcome)
        if self.listeners and written:
            task = asyncio.create_task(self._notify(_by_device(written)))
            self._notifications.add(task)
            task.add_done_callback(self._notifications.discard)

    async def _store(self, docs: list[dict[str, Any]]) -> set[int]:
        """Insert the readings; the positions the server refused.

        A failure whose outcome is unknown (connection lost, failover, timeout, a write
        concern error) may have stored some or all of them: reconcile by `_id` instead of
        answering, so that neither a retry nor this flush stores a reading twice.
        """
        for doc in docs:
            doc.setdefault("_id", ObjectId())  # known before sending, for reconciliation
        try:
            await repository.insert_readings(self.engine, docs)
            return set()
        except BulkWriteError as exc:
            details = exc.details or {}
            if not details.get("writeConcernErrors"):
                refused = {int(err["index"]) for err in details.get("writeErrors", [])}
                logger.error("readings refused by the server", extra={"count": len(refused)})
                return refused
            error = "writeConcernError"
        except PyMongoError as exc:
            error = type(exc).__name__
        logger.warning("readings write outcome unknown; reconciling", extra={"error": error})
        INGEST_RECONCILIATIONS.inc()
        return await self._reconcile(docs)

    async def _reconcile(self, docs: list[dict[str, Any]]) -> set[int]:
        """Query the readings back by `_id` and insert the missing ones, until confirmed.

        Raises IngestOutcomeUnknown when the database stays away past the reconcile timeout.
        """
        deadline = time.monotonic() + self.reconcile_timeout_s
        delay = 0.05
        while True:
            try:
                stored = await repository.stored_ids(self.engine, docs)
                missing = [i for i, doc in enumerate(docs) if doc["_id"] not in stored]
                if not missing:
                    return set()
                await repository.insert_readings(self.engine, [docs[i] for i in missing])
                return set()
            except BulkWriteError as exc:
                details = exc.details or {}
                if not details.get("writeConcernErrors"):
                    return {missing[int(err["index"])] for err in details.get("writeErrors", [])}
            except PyMongoError:
                pass
            if time.monotonic() >= deadline:
                raise IngestOutcomeUnknown(
                    "The database did not confirm whether the readings were stored; retry "
                    "with the same Idempotency-Key and nothing is stored twice"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _notify(self, flushed: list[DeviceFlush]) -> None:
        results = await asyncio.gather(
            *(listener(flushed) for listener in self.listeners), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                logger.error("flush listener failed", extra={"error": repr(result)})

    async def _update_latest(self, docs: list[dict[str, Any]]) -> None:
        newest: dict[str, dict[str, dict[str, Any]]] = {}
        products: dict[str, str] = {}
        for doc in docs:
            device_id = doc["meta"]["device_id"]
            products[device_id] = doc["meta"]["product_id"]
            per_device = newest.setdefault(device_id, {})
            ts = doc["ts"]
            suspect = doc.get("suspect")
            for key, value in doc["m"].items():
                current = per_device.get(key)
                if current is None or ts >= current["ts"]:
                    entry = {"ts": ts, "v": value}
                    if suspect and any(field_key(name) == key for name in suspect):
                        entry["suspect"] = True
                    per_device[key] = entry
        ensure = [
            repository.latest_ensure(device_id, products[device_id])
            for device_id in newest
            if device_id not in self._latest_known
        ]
        # Writes are unordered (one device's failure never drops another's), so documents of
        # devices seen for the first time are made before they are offered values.
        await repository.write_latest(self.engine, ensure)
        # Usually every value is newer than the device's newest: one operation per device.
        fast = [repository.latest_offer_all(d, metrics) for d, metrics in newest.items()]
        matched = await repository.write_latest(self.engine, fast)
        if len(self._latest_known) > _MEMO_LIMIT:
            self._latest_known.clear()
        self._latest_known.update(newest)
        if matched >= len(fast):
            await self._copy_latest(newest)
            return
        # Some device got a late value: offer each metric on its own (the fast operations
        # that did apply make these no-ops, as none of them is newer any more).
        slow: list[UpdateOne] = []
        for device_id, metrics in newest.items():
            slow.extend(repository.latest_offer(device_id, k, v) for k, v in metrics.items())
            slow.append(repository.latest_newest(device_id, max(v["ts"] for v in metrics.values())))
        await repository.write_latest(self.engine, slow)
        await self._copy_latest(newest)

    async def _copy_latest(self, newest: dict[str, dict[str, dict[str, Any]]]) -> None:
        """Offer the values just written to MongoDB to their Redis copies (newer ones only)."""
        if self.latest_values is not None:
            await self.latest_values.offer(newest)

    async def _update_presence(self, items: list[_Item]) -> None:
        mono = time.monotonic()
        now = utcnow()
        cutoff = now - timedelta(seconds=self.presence_throttle_s)
        ops: list[UpdateOne] = []
        noted: dict[str, dict[str, Any]] = {}
        for item in items:
            device_id = item.context.device_id
            if device_id in noted:
                continue
            last = self._presence_memo.get(device_id)
            if last is not None and mono - last < self.presence_throttle_s:
                continue
            op, written = presence.refresh_op(
                device_id, item.context.presence, now=now, cutoff=cutoff
            )
            ops.append(op)
            noted[device_id] = written
        if not ops:
            return
        if len(self._presence_memo) > _MEMO_LIMIT:
            self._presence_memo.clear()
        for device_id in noted:
            self._presence_memo[device_id] = mono
        if await presence.write_refreshes(self.engine, ops) < len(ops):
            await self._presence_missed(noted, cutoff)
        elif self.cache is not None:
            for device_id, written in noted.items():
                self.cache.note_presence(device_id, written)

    async def _presence_missed(self, noted: dict[str, dict[str, Any]], cutoff: datetime) -> None:
        """Some refresh matched nothing: its expected presence was stale (another process, or
        a heartbeat, wrote since the context was read). Read what is stored, so the next
        refresh expects it; a device whose stored presence is older than `cutoff` (its
        refresh was lost, not merely made elsewhere) is refreshed at its next reading."""
        stored = await presence.read_many(self.engine, list(noted))
        for device_id in noted:
            current = stored.get(device_id)
            if self.cache is not None:
                self.cache.note_presence(device_id, current)
            seen_at = presence.parse(current).last_seen_at
            if seen_at is None or seen_at < cutoff:
                self._presence_memo.pop(device_id, None)

    async def _record_answers(self, items: list[_Item], outcomes: list[WriteOutcome]) -> None:
        ops: list[UpdateOne] = []
        for item, outcome in zip(items, outcomes, strict=True):
            if item.key_id is not None and item.response is not None and not outcome.failed:
                ops.append(repository.complete_key_op(item.key_id, item.response))
                outcome.key_recorded = True
        try:
            await repository.complete_keys(self.engine, ops)
        except PyMongoError:
            for outcome in outcomes:
                outcome.key_recorded = False
            raise


def _by_device(docs: list[dict[str, Any]]) -> list[DeviceFlush]:
    """The written readings grouped by device, each group in time order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        groups.setdefault(doc["meta"]["device_id"], []).append(doc)
    return [
        DeviceFlush(
            device_id=device_id,
            product_id=group[0]["meta"]["product_id"],
            docs=sorted(group, key=lambda d: d["ts"]),
        )
        for device_id, group in groups.items()
    ]
