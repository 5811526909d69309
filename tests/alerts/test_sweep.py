"""The beat's sweep: no_data on time (injected clock, then the real beat), for_s expiry."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from bson import ObjectId
from odmantic import AIOEngine

from app.alerts.sweep import Sweeper
from app.catalog.models import Folder
from app.core.config import Settings
from app.core.db import database
from app.core.models import epoch_ms, utcnow
from app.worker.context import WorkerContext
from tests.fixtures.alerts import alarms_of, new_rule, wait_for
from tests.fixtures.catalog import MASTER, new_device, new_folder, new_product
from tests.fixtures.servers import ManagedProcess


async def sweep(settings: Settings, *, now_ms: int) -> tuple[dict[str, int], list[str]]:
    """One sweep run in a thread with an injected clock; (counts, events enqueued)."""
    ctx = WorkerContext(settings)
    enqueued: list[str] = []
    try:
        counts = await asyncio.to_thread(Sweeper(ctx, now_ms=now_ms, enqueue=enqueued.append).run)
    finally:
        ctx.close()
    return counts, enqueued


async def silent_device(
    engine: AIOEngine, *, heard_ago_s: float, folder: Folder | None = None
) -> Any:
    """A device last heard from `heard_ago_s` seconds ago (by its presence)."""
    product = await new_product(engine, owner=MASTER, folder=folder)
    seen = utcnow() - timedelta(seconds=heard_ago_s)
    device, _ = await new_device(
        engine, owner=MASTER, product=product, folder=folder, presence={"last_seen_at": seen}
    )
    return product, device, seen


class TestNoDataDeadline:
    async def test_fires_at_the_deadline_not_before(
        self, settings: Settings, engine: AIOEngine
    ) -> None:
        product, device, seen = await silent_device(engine, heard_ago_s=0)
        await new_rule(
            engine,
            scope=product,
            condition={"type": "no_data", "after_s": 120},
            notify={"emails": ["ops@example.com"]},
        )
        deadline = epoch_ms(seen) + 120_000
        counts, _ = await sweep(settings, now_ms=deadline - 1000)
        assert await alarms_of(engine, device_id=str(device.id)) == []
        counts, enqueued = await sweep(settings, now_ms=deadline)
        [alarm] = await alarms_of(engine, device_id=str(device.id))
        assert alarm["condition_type"] == "no_data"
        assert alarm["raised_ms"] == deadline
        assert f"{alarm['_id']}:raised" in enqueued
        # A second run adds nothing: one alarm, count 1, one event.
        await sweep(settings, now_ms=deadline + 30_000)
        [again] = await alarms_of(engine, device_id=str(device.id))
        assert again["count"] == 1
        events = database(engine)["alert_events"]
        assert await events.count_documents({"alarm_id": str(alarm["_id"])}) == 1

    async def test_latest_readings_keep_a_device_alive(
        self, settings: Settings, engine: AIOEngine
    ) -> None:
        """Presence is throttled; the latest reading's time counts too."""
        product, device, seen = await silent_device(engine, heard_ago_s=0)
        await new_rule(engine, scope=product, condition={"type": "no_data", "after_s": 60})
        recent = seen + timedelta(seconds=50)
        await database(engine)["device_latest"].insert_one(
            {
                "_id": str(device.id),
                "product_id": str(product.id),
                "m": {"t": {"ts": recent, "v": 1}},
            }
        )
        await sweep(settings, now_ms=epoch_ms(seen) + 61_000)
        assert await alarms_of(engine, device_id=str(device.id)) == []
        await sweep(settings, now_ms=epoch_ms(recent) + 60_000)
        assert len(await alarms_of(engine, device_id=str(device.id))) == 1

    async def test_folder_scope_pages_through_devices(
        self, make_settings: Any, engine: AIOEngine
    ) -> None:
        folder = await new_folder(engine, owner=MASTER)
        devices = [
            (await silent_device(engine, heard_ago_s=600, folder=folder))[1] for _ in range(25)
        ]
        await new_rule(engine, scope=folder, condition={"type": "no_data", "after_s": 60})
        counts, _ = await sweep(make_settings(alerts_sweep_page_size=10), now_ms=epoch_ms(utcnow()))
        assert counts["devices"] >= 25
        for device in devices:
            assert len(await alarms_of(engine, device_id=str(device.id))) == 1

    async def test_real_beat_fires_within_a_minute_of_the_deadline(
        self, engine: AIOEngine, celery_worker: ManagedProcess
    ) -> None:
        """The worker's beat (ALERTS_SWEEP_INTERVAL_S=1 in tests; at most 60 by settings)."""
        product, device, seen = await silent_device(engine, heard_ago_s=8)
        await new_rule(engine, scope=product, condition={"type": "no_data", "after_s": 10})
        deadline = epoch_ms(seen) + 10_000

        async def raised() -> list[dict[str, Any]]:
            return await alarms_of(engine, device_id=str(device.id))

        await wait_for(raised, timeout=30, what="the no_data alarm")
        late_s = (time.time_ns() // 1_000_000 - deadline) / 1000
        assert late_s < 60


class TestForSExpiry:
    async def test_beat_raises_when_the_condition_held_with_no_new_reading(
        self, settings: Settings, engine: AIOEngine
    ) -> None:
        product = await new_product(engine, owner=MASTER)
        device, _ = await new_device(engine, owner=MASTER, product=product)
        rule = await new_rule(
            engine,
            scope=product,
            condition={"type": "threshold", "metric": "t", "op": ">", "value": 1, "for_s": 60},
        )
        sid = f"{rule.id}:{device.id}"
        await database(engine)["alert_states"].insert_one(
            {
                "_id": sid,
                "rule_id": str(rule.id),
                "device_id": str(device.id),
                "pending_ms": 0,
                "due_ms": 60_000,
                "last_ms": 1000,
                "last_v": 5.0,
                "active": False,
            }
        )
        await sweep(settings, now_ms=59_999)
        assert await alarms_of(engine, device_id=str(device.id)) == []
        counts, _ = await sweep(settings, now_ms=60_000)
        [alarm] = await alarms_of(engine, device_id=str(device.id))
        assert alarm["last_value"] == 5.0
        assert alarm["raised_ms"] == 60_000
        state = await database(engine)["alert_states"].find_one({"_id": sid})
        assert state is not None
        assert state["active"]  # the embedded server reads a `$set` True back as 1
        assert "due_ms" not in state


class TestRequeue:
    async def test_lost_events_and_webhook_retries_are_sent_again(
        self, settings: Settings, engine: AIOEngine
    ) -> None:
        now = epoch_ms(utcnow())
        old = now - (settings.alert_notify_grace_s + 5) * 1000
        db = database(engine)
        tag = str(ObjectId())
        lost, retry, dead, later = (f"{name}-{tag}" for name in ("lost", "retry", "dead", "later"))
        await db["alert_events"].insert_one(
            {"_id": lost, "alarm_id": "a", "status": "pending", "created_ms": old}
        )
        await db["webhook_deliveries"].insert_many(
            [
                {"_id": retry, "alarm_id": "a", "status": "pending", "next_ms": old},
                {"_id": dead, "alarm_id": "a", "status": "sending", "lease_ms": now - 1},
                {"_id": later, "alarm_id": "a", "status": "pending", "next_ms": now},
            ]
        )
        ctx = WorkerContext(settings)
        events: list[str] = []
        hooks: list[str] = []
        try:
            sweeper = Sweeper(ctx, now_ms=now, enqueue=events.append, enqueue_webhook=hooks.append)
            await asyncio.to_thread(sweeper.run)
        finally:
            ctx.close()
            # These rows are bare on purpose (no target URL): a session's real worker must not
            # find them on its own sweep and report a task crash for them.
            await db["alert_events"].delete_many({"_id": {"$in": [lost]}})
            await db["webhook_deliveries"].delete_many({"_id": {"$in": [retry, dead, later]}})
        assert lost in events
        assert {retry, dead} <= set(hooks)
        assert later not in hooks


class TestRetention:
    async def test_counts_from_when_the_alarm_was_cleared_not_from_the_reading(
        self, settings: Settings, engine: AIOEngine
    ) -> None:
        """Back-filled readings a year old raise and clear alarms that are kept for the full
        retention; alarms cleared longer ago than that go, with their events."""
        now = epoch_ms(utcnow())
        retention_ms = settings.alarm_retention_days * 86_400_000
        year_ago = now - 365 * 86_400_000
        alarms = database(engine)["alarms"]
        backfilled = ObjectId()
        expired = ObjectId()
        await alarms.insert_many(
            [
                {"_id": backfilled, "status": "cleared", "cleared_ms": year_ago, "closed_ms": now},
                {
                    "_id": expired,
                    "status": "cleared",
                    "cleared_ms": year_ago,
                    "closed_ms": now - retention_ms - 1000,
                },
            ]
        )
        await database(engine)["alert_events"].insert_one(
            {"_id": f"{expired}:cleared", "alarm_id": str(expired), "status": "sent"}
        )
        counts, _ = await sweep(settings, now_ms=now)
        assert await alarms.find_one({"_id": backfilled}) is not None
        assert await alarms.find_one({"_id": expired}) is None
        assert await database(engine)["alert_events"].find_one({"alarm_id": str(expired)}) is None
