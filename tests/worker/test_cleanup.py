"""Cleanup jobs delete only what is expired, and never run twice at once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from bson import ObjectId
from fastapi import FastAPI
from odmantic import AIOEngine

from app.catalog.devices import service as devices_service
from app.catalog.models import Device
from app.core.config import Settings
from app.core.db import MongoDatabase
from app.core.models import utcnow
from app.core.services import services_of
from app.stats import devices as stats_devices
from app.worker import cleanup
from app.worker.context import WorkerContext
from app.worker.locks import redis_lock
from tests.fixtures.catalog import new_device, new_product, user_principal


@pytest.fixture
def ctx(app: FastAPI, settings: Settings) -> Iterator[WorkerContext]:
    """A worker context in the test process (the same code the worker runs)."""
    context = WorkerContext(settings)
    yield context
    context.close()


def tag() -> str:
    return uuid_hex()


def uuid_hex() -> str:
    return ObjectId().__str__()


class TestExpiredSessionsAndKeys:
    @pytest.mark.parametrize(
        ("job", "collection"),
        [
            (cleanup.expired_sessions, "sessions"),
            (cleanup.expired_idempotency_keys, "idempotency_keys"),
        ],
    )
    def test_deletes_only_expired(self, ctx: WorkerContext, job: Any, collection: str) -> None:
        now = utcnow()
        run = tag()
        coll = ctx.db[collection]
        coll.insert_many(
            [
                {"run": run, "name": "expired", "expires_at": now - timedelta(minutes=1)},
                {"run": run, "name": "long expired", "expires_at": now - timedelta(days=9)},
                {"run": run, "name": "live", "expires_at": now + timedelta(minutes=5)},
            ]
        )
        # The TTL monitor may remove some first; what counts is what is left.
        assert "deleted" in job(ctx)
        assert [d["name"] for d in coll.find({"run": run})] == ["live"]
        assert job(ctx) == {"deleted": 0}  # idempotent


class TestOldReadings:
    def test_deletes_readings_past_retention_only(
        self, ctx: WorkerContext, settings: Settings
    ) -> None:
        device = tag()
        now = utcnow()
        retention = timedelta(days=settings.readings_retention_days)
        ctx.db.readings.insert_many(
            [
                {"meta": {"device_id": device}, "ts": now - retention - timedelta(hours=1), "v": 1},
                {"meta": {"device_id": device}, "ts": now - retention + timedelta(hours=1), "v": 2},
                {"meta": {"device_id": device}, "ts": now, "v": 3},
            ]
        )
        if cleanup.readings_expire_themselves(ctx):  # a time-series collection with expiry
            assert "skipped" in cleanup.old_readings(ctx)
            return
        assert cleanup.old_readings(ctx)["deleted"] >= 1
        kept = sorted(d["v"] for d in ctx.db.readings.find({"meta.device_id": device}))
        assert kept == [2, 3]

    def test_left_to_the_server_where_the_collection_expires_readings(
        self, ctx: WorkerContext
    ) -> None:
        [info] = [c for c in ctx.db.list_collections() if c["name"] == "readings"]
        options = info.get("options") or {}
        expires = info.get("type") == "timeseries" and bool(options.get("expireAfterSeconds"))
        # On real MongoDB the collection expires readings and the job sends no delete by time;
        # on a server without time-series collections the job is the only retention.
        assert cleanup.readings_expire_themselves(ctx) is expires


def insert_outbox(ctx: WorkerContext, run: str, rows: list[tuple[str, datetime]]) -> None:
    """Outbox entries `{run}-{i}` with the given status, last changed at the given time."""
    ctx.db.email_outbox.insert_many(
        [
            {
                "to": "x@example.com",
                "template": "welcome",
                "context": {"name": "Kept only until archived", "run": run},
                "status": status,
                "attempts": 1,
                "dedupe_key": f"{run}-{i}",
                "created_at": at,
                "updated_at": at,
            }
            for i, (status, at) in enumerate(rows)
        ]
    )


class TestArchiveOutbox:
    def test_archives_old_sent_and_failed_only(
        self, ctx: WorkerContext, settings: Settings
    ) -> None:
        run = tag()
        old = utcnow() - timedelta(days=settings.outbox_archive_after_days + 1)
        recent = utcnow() - timedelta(days=1)
        rows = [
            ("sent", old),
            ("failed", old),
            ("pending", old),
            ("sending", old),
            ("sent", recent),
        ]
        insert_outbox(ctx, run, rows)
        assert cleanup.archive_outbox(ctx)["archived"] >= 2
        docs = list(ctx.db.email_outbox.find({"dedupe_key": {"$regex": f"^{run}-"}}))
        by_key = {d["dedupe_key"]: d for d in docs}
        statuses = [by_key[f"{run}-{i}"]["status"] for i in range(len(rows))]
        assert statuses == ["archived", "archived", "pending", "sending", "sent"]
        assert by_key[f"{run}-0"]["context"] == {}
        assert by_key[f"{run}-4"]["context"]["run"] == run

    def test_deletes_archived_entries_past_the_retention_only(
        self, ctx: WorkerContext, settings: Settings
    ) -> None:
        run = tag()
        past = utcnow() - timedelta(days=settings.outbox_retention_days + 1)
        within = utcnow() - timedelta(days=settings.outbox_retention_days - 1)
        rows = [("archived", past), ("archived", within), ("failed", past)]
        insert_outbox(ctx, run, rows)
        assert cleanup.archive_outbox(ctx)["deleted"] >= 1
        docs = ctx.db.email_outbox.find({"dedupe_key": {"$regex": f"^{run}-"}})
        left = {d["dedupe_key"]: d["status"] for d in docs}
        # The failed one is archived by this run and deleted by a later one.
        assert left == {f"{run}-1": "archived", f"{run}-2": "archived"}


class TestOneRunAtATime:
    """The lock mechanics, on a collection of the test's own: the real ones have TTL indexes,
    whose monitor could delete the expired documents while the test looks at them."""

    def purge(self, ctx: WorkerContext, name: str) -> dict[str, Any]:
        return cleanup.delete_before(
            ctx, f"cleanup.{name}", collection=name, field="expires_at", cutoff=utcnow()
        )

    def test_a_run_is_skipped_while_another_holds_the_lock(self, ctx: WorkerContext) -> None:
        name = f"cleanup_{tag()}"
        ctx.db[name].insert_one({"expires_at": utcnow() - timedelta(hours=1)})
        with redis_lock(ctx.redis, f"cleanup.{name}", ttl_ms=10_000) as held:
            assert held
            assert self.purge(ctx, name) == cleanup.SKIPPED
            assert ctx.db[name].count_documents({}) == 1
        assert self.purge(ctx, name)["deleted"] == 1
        ctx.db.drop_collection(name)

    def test_concurrent_runs_do_not_double_process(
        self, ctx: WorkerContext, settings: Settings
    ) -> None:
        name = f"cleanup_{tag()}"
        expired = utcnow() - timedelta(hours=1)
        ctx.db[name].insert_many([{"n": i, "expires_at": expired} for i in range(300)])
        contexts = [WorkerContext(settings) for _ in range(4)]
        barrier = threading.Barrier(len(contexts))
        results: list[dict[str, Any]] = []

        def work(c: WorkerContext) -> None:
            barrier.wait()
            results.append(self.purge(c, name))

        threads = [threading.Thread(target=work, args=(c,)) for c in contexts]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        for c in contexts:
            c.close()
        assert len(results) == 4
        assert sum(r.get("deleted", 0) for r in results) == 300
        assert sum(1 for r in results if r.get("deleted")) == 1
        assert ctx.db[name].count_documents({}) == 0
        ctx.db.drop_collection(name)


class TestDeletedDevices:
    async def test_their_data_goes_and_everyone_elses_stays(
        self,
        ctx: WorkerContext,
        engine: AIOEngine,
        app: FastAPI,
        client: httpx.AsyncClient,
        mongo_db: MongoDatabase,
    ) -> None:
        alice = user_principal()
        product = await new_product(engine, owner=alice)
        kept, kept_key = await new_device(engine, owner=alice, product=product)
        gone, gone_key = await new_device(engine, owner=alice, product=product)
        for device, key in ((kept, kept_key), (gone, gone_key)):
            resp = await client.post(
                f"/api/v1/devices/{device.id}/readings",
                json={"readings": [{"metrics": {"t": 1}}, {"metrics": {"t": 2}}]},
                headers={"X-Device-Key": key, "Idempotency-Key": "first-upload"},
            )
            assert resp.json()["accepted"] == 2, resp.text

        async def counts(device: Device) -> tuple[int, int, int]:
            device_id = str(device.id)
            return (
                await mongo_db.readings.count_documents({"meta.device_id": device_id}),
                await mongo_db.device_latest.count_documents({"_id": device_id}),
                await mongo_db.idempotency_keys.count_documents({"device_id": device_id}),
            )

        await devices_service.delete(services_of(app), device=gone)
        assert await counts(gone) == (2, 1, 1)  # deleting answers at once; the data waits
        result = await asyncio.to_thread(cleanup.deleted_devices_data, ctx, batch=2)
        assert result["devices"] >= 1
        assert result["readings"] >= 2
        assert await counts(gone) == (0, 0, 0)
        assert await counts(kept) == (2, 1, 1)
        assert await asyncio.to_thread(cleanup.deleted_devices_data, ctx) == {
            "devices": 0,
            "readings": 0,
        }


class TestRecountDevices:
    async def test_builds_the_statistics_counters_under_its_lock(
        self, app: FastAPI, ctx: WorkerContext
    ) -> None:
        services = services_of(app)
        owner = user_principal()
        product = await new_product(services.engine, owner=owner)
        device, _ = await new_device(services.engine, owner=owner, product=product)
        await services.redis.delete(stats_devices.BUILT)
        with redis_lock(ctx.redis, "stats.recount_devices", ttl_ms=5000) as acquired:
            assert acquired
            assert await asyncio.to_thread(cleanup.recount_devices, ctx) == cleanup.SKIPPED
        counts = await asyncio.to_thread(cleanup.recount_devices, ctx)
        assert counts["devices"] >= 1
        assert await services.device_counters.built()
        member = await services.redis.zscore(
            f"{stats_devices.PREFIX}seen:p:{product.id}", str(device.id)
        )
        assert member == 0  # counted, never seen
        await services.redis.delete(stats_devices.BUILT)  # other tests count with queries
