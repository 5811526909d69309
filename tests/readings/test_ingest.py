"""Ingest through the service layer: group commit, idempotency, latest values, presence."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from odmantic import AIOEngine

from app.core.config import Settings
from app.core.db import MongoDatabase
from app.core.idempotency import IdempotencyKeyInvalid, IdempotencyKeyReused
from app.core.models import utcnow
from app.core.services import services_of
from app.readings import ingest, queries
from app.readings.batcher import DeviceFlush, IngestBatcher
from app.readings.context import DeviceContextCache
from app.readings.exceptions import (
    IngestUnavailable,
    ReadingsInvalid,
)
from app.readings.schemas import HeartbeatIn
from tests.fixtures.readings import MakeDevice, TestDevice, running_batcher


def body(*readings: dict[str, Any]) -> bytes:
    return json.dumps({"readings": list(readings)}).encode()


def at(minutes: float) -> str:
    ts = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    return (ts + timedelta(minutes=minutes)).isoformat()


async def post(
    engine: AIOEngine,
    batcher: IngestBatcher,
    device: TestDevice,
    settings: Settings,
    payload: bytes,
    key: str | None = None,
) -> ingest.IngestAnswer:
    return await ingest.receive(
        engine,
        batcher=batcher,
        context=device.context,
        body_in=payload,
        idempotency_key=key,
        settings=settings,
    )


async def stored(mongo_db: MongoDatabase, device: TestDevice) -> list[dict[str, Any]]:
    cursor = mongo_db["readings"].find({"meta.device_id": device.id}).sort("ts", 1)
    return await cursor.to_list(None)


class TestIngestStores:
    async def test_batch_is_stored_with_meta_and_latest(
        self,
        engine: AIOEngine,
        batcher: IngestBatcher,
        settings: Settings,
        make_device: MakeDevice,
        mongo_db: MongoDatabase,
    ) -> None:
        device = await make_device()
        payload = body(
            {"ts": at(0), "metrics": {"temperature": 20.5}},
            {"ts": at(1), "metrics": {"temperature": 21.5, "humidity": 40}},
        )
        answer = await post(engine, batcher, device, settings, payload)
        assert (answer.result.accepted, answer.result.rejected) == (2, 0)
        docs = await stored(mongo_db, device)
        assert [d["m"] for d in docs] == [
            {"temperature": 20.5},
            {"temperature": 21.5, "humidity": 40.0},
        ]
        assert docs[0]["meta"] == {"device_id": device.id, "product_id": device.context.product_id}
        latest = await queries.latest(engine, device_id=device.id)
        assert latest.metrics["temperature"].value == 21.5
        assert latest.metrics["humidity"].value == 40.0

    async def test_rejected_request_stores_nothing(
        self,
        engine: AIOEngine,
        batcher: IngestBatcher,
        settings: Settings,
        make_device: MakeDevice,
        mongo_db: MongoDatabase,
    ) -> None:
        device = await make_device()
        payload = body({"metrics": {"temperature": 1}}, {"metrics": {"temperature": "x"}})
        with pytest.raises(ReadingsInvalid):
            await post(engine, batcher, device, settings, payload)
        assert await stored(mongo_db, device) == []
        assert await mongo_db["device_latest"].find_one({"_id": device.id}) is None

    async def test_partial_rejection_is_counted(
        self,
        engine: AIOEngine,
        batcher: IngestBatcher,
        settings: Settings,
        make_device: MakeDevice,
        mongo_db: MongoDatabase,
    ) -> None:
        device = await make_device(allow_unknown=False)
        payload = body({"metrics": {"temperature": 1}}, {"metrics": {"co2": 500}})
        answer = await post(engine, batcher, device, settings, payload)
        assert (answer.result.accepted, answer.result.rejected) == (1, 1)
        assert answer.result.errors[0].index == 1
        assert answer.result.errors[0].reason == "unknown-metric"
        assert len(await stored(mongo_db, device)) == 1


class TestGroupCommit:
    async def test_concurrent_requests_share_flushes(
        self,
        engine: AIOEngine,
        settings: Settings,
        make_device: MakeDevice,
        mongo_db: MongoDatabase,
    ) -> None:
        devices = [await make_device() for _ in range(4)]
        async with running_batcher(engine, flush_interval_s=0.05, max_docs=10_000) as batcher:
            answers = await asyncio.gather(
                *(
                    post(engine, batcher, d, settings, body({"metrics": {"temperature": i}}))
                    for i in range(10)
                    for d in devices
                )
            )
        assert all(a.result.accepted == 1 for a in answers)
        assert batcher.flush_count < 40
        for d in devices:
            assert len(await stored(mongo_db, d)) == 10

    async def test_idle_database_writes_at_once_and_readings_gather_meanwhile(
        self,
        engine: AIOEngine,
        settings: Settings,
        make_device: MakeDevice,
        mongo_db: MongoDatabase,
    ) -> None:
        devices = [await make_device() for _ in range(4)]
        # An interval no test could wait for: only the idle rule can start these flushes.
        async with running_batcher(
            engine, flush_interval_s=600, max_docs=10_000, flush_when_idle=True
        ) as batcher:
            async with asyncio.timeout(30):
                first = await post(
                    engine, batcher, devices[0], settings, body({"metrics": {"temperature": 0}})
                )
                assert first.result.accepted == 1
                answers = await asyncio.gather(
                    *(
                        post(engine, batcher, d, settings, body({"metrics": {"temperature": i}}))
                        for i in range(1, 11)
                        for d in devices
                    )
                )
            assert all(a.result.accepted == 1 for a in answers)
            assert batcher.flush_count < 41  # gathered while a flush was written
        assert sum([len(await stored(mongo_db, d)) for d in devices]) == 41

    @pytest.mark.parametrize("in_flight", [1, 3])
    async def test_flushes_in_flight_are_capped(
        self,
        engine: AIOEngine,
        settings: Settings,
        make_device: MakeDevice,
        mongo_db: MongoDatabase,
        in_flight: int,
    ) -> None:
        class Watched(IngestBatcher):
            active = peak = 0

            async def _write(self, items: list[Any]) -> None:
                Watched.active += 1
                Watched.peak = max(Watched.peak, Watched.active)
                try:
                    await super()._write(items)
                finally:
                    Watched.active -= 1

        device = await make_device()
        batcher = Watched(
            engine, flush_interval_s=0, max_docs=1, presence_throttle_s=30, max_in_flight=in_flight
        )
        batcher.start()
        try:
            answers = await asyncio.gather(
                *(
                    post(engine, batcher, device, settings, body({"metrics": {"temperature": i}}))
                    for i in range(12)
                )
            )
        finally:
            await batcher.stop()
        assert all(a.result.accepted == 1 for a in answers)
        assert Watched.peak == in_flight  # one reading per flush: the cap is what limits them
        assert len(await stored(mongo_db, device)) == 12

    async def test_shutdown_writes_every_acknowledged_reading(
        self,
        make_settings: Callable[..., Settings],
        app_with: Callable[..., Any],
        make_device: MakeDevice,
        mongo_db: MongoDatabase,
    ) -> None:
        device = await make_device()
        # A long window, and no flush when idle: readings wait in memory for the shutdown.
        settings = make_settings(ingest_flush_interval_ms=1000, ingest_flush_when_idle=False)
        async with app_with(settings) as other:
            engine = services_of(other).engine
            batcher = services_of(other).batcher
            tasks = [
                asyncio.create_task(
                    post(engine, batcher, device, settings, body({"metrics": {"temperature": i}}))
                )
                for i in range(50)
            ]
            for _ in range(100):  # wait until they are queued, not yet flushed
                if batcher.queued >= 25:
                    break
                await asyncio.sleep(0.01)
            # ... and shut the app down now.
        results = await asyncio.gather(*tasks, return_exceptions=True)
        acknowledged = {i for i, r in enumerate(results) if isinstance(r, ingest.IngestAnswer)}
        assert acknowledged  # the requests already queued were flushed on shutdown
        values = {int(d["m"]["temperature"]) for d in await stored(mongo_db, device)}
        assert acknowledged <= values

    async def test_stopped_batcher_refuses_and_stores_nothing(
        self,
        engine: AIOEngine,
        settings: Settings,
        make_device: MakeDevice,
        mongo_db: MongoDatabase,
    ) -> None:
        device = await make_device()
        batcher = IngestBatcher(engine, flush_interval_s=0, max_docs=10, presence_throttle_s=30)
        batcher.start()
        await batcher.stop()
        with pytest.raises(IngestUnavailable):
            await post(engine, batcher, device, settings, body({"metrics": {"temperature": 1}}))
        assert await stored(mongo_db, device) == []


class TestFlushListeners:
    async def test_told_once_per_flush_with_what_was_stored_by_device(
        self, engine: AIOEngine, settings: Settings, make_device: MakeDevice
    ) -> None:
        one, two = await make_device(), await make_device()
        told: list[list[DeviceFlush]] = []

        async def listener(flushed: Sequence[DeviceFlush]) -> None:
            told.append(list(flushed))

        async def broken(flushed: Sequence[DeviceFlush]) -> None:
            raise RuntimeError("a listener's failure must not reach ingest")

        async with running_batcher(
            engine, flush_interval_s=0.05, listeners=[broken, listener]
        ) as batcher:
            answers = await asyncio.gather(
                post(engine, batcher, one, settings, body({"ts": at(2), "metrics": {"t": 2}})),
                post(engine, batcher, one, settings, body({"ts": at(1), "metrics": {"t": 1}})),
                post(engine, batcher, two, settings, body({"ts": at(1), "metrics": {"t": 9}})),
            )
        assert [a.result.accepted for a in answers] == [1, 1, 1]
        assert len(told) == 1  # one flush, one notification
        by_device = {f.device_id: [d["m"]["t"] for d in f.docs] for f in told[0]}
        assert by_device == {one.id: [1.0, 2.0], two.id: [9.0]}  # in time order


class TestIdempotency:
    async def test_retry_storm_stores_once(
        self,
        engine: AIOEngine,
        batcher: IngestBatcher,
        settings: Settings,
        make_device: MakeDevice,
        mongo_db: MongoDatabase,
    ) -> None:
        device = await make_device()
        payload = body(*({"ts": at(i), "metrics": {"temperature": i}} for i in range(20)))
        answers = await asyncio.gather(
            *(post(engine, batcher, device, settings, payload, key="batch-1") for _ in range(5))
        )
        assert len(await stored(mongo_db, device)) == 20
        assert {a.result.model_dump_json() for a in answers} == {
            answers[0].result.model_dump_json()
        }
        assert sum(not a.replayed for a in answers) == 1

    async def test_retry_later_replays_first_answer(
        self,
        engine: AIOEngine,
        batcher: IngestBatcher,
        settings: Settings,
        make_device: MakeDevice,
        mongo_db: MongoDatabase,
    ) -> None:
        device = await make_device(allow_unknown=False)
        payload = body({"metrics": {"temperature": 1}}, {"metrics": {"nope": 1}})
        first = await post(engine, batcher, device, settings, payload, key="k")
        again = await post(engine, batcher, device, settings, payload, key="k")
        assert again.replayed
        assert again.result == first.result
        assert len(await stored(mongo_db, device)) == 1

    async def test_keys_are_per_device(
        self,
        engine: AIOEngine,
        batcher: IngestBatcher,
        settings: Settings,
        make_device: MakeDevice,
        mongo_db: MongoDatabase,
    ) -> None:
        one, two = await make_device(), await make_device()
        payload = body({"metrics": {"temperature": 1}})
        await post(engine, batcher, one, settings, payload, key="same")
        answer = await post(engine, batcher, two, settings, payload, key="same")
        assert not answer.replayed
        assert len(await stored(mongo_db, two)) == 1

    async def test_key_reused_with_other_body(
        self, engine: AIOEngine, batcher: IngestBatcher, settings: Settings, make_device: MakeDevice
    ) -> None:
        device = await make_device()
        await post(engine, batcher, device, settings, body({"metrics": {"temperature": 1}}), "r")
        with pytest.raises(IdempotencyKeyReused):
            await post(
                engine, batcher, device, settings, body({"metrics": {"temperature": 2}}), "r"
            )

    @pytest.mark.parametrize("key", ["", "a b", "x" * 256, "é"])
    async def test_invalid_key(
        self,
        key: str,
        engine: AIOEngine,
        batcher: IngestBatcher,
        settings: Settings,
        make_device: MakeDevice,
    ) -> None:
        device = await make_device()
        with pytest.raises(IdempotencyKeyInvalid):
            await post(
                engine, batcher, device, settings, body({"metrics": {"temperature": 1}}), key
            )

    async def test_failed_write_releases_the_key(
        self,
        engine: AIOEngine,
        batcher: IngestBatcher,
        settings: Settings,
        make_device: MakeDevice,
        mongo_db: MongoDatabase,
    ) -> None:
        device = await make_device()
        stopped = IngestBatcher(engine, flush_interval_s=0, max_docs=10, presence_throttle_s=30)
        payload = body({"metrics": {"temperature": 1}})
        with pytest.raises(IngestUnavailable):
            await post(engine, stopped, device, settings, payload, key="again")
        answer = await post(engine, batcher, device, settings, payload, key="again")
        assert not answer.replayed
        assert len(await stored(mongo_db, device)) == 1

    async def test_key_document_expires(
        self,
        engine: AIOEngine,
        batcher: IngestBatcher,
        settings: Settings,
        make_device: MakeDevice,
        mongo_db: MongoDatabase,
    ) -> None:
        device = await make_device()
        await post(engine, batcher, device, settings, body({"metrics": {"temperature": 1}}), "ttl")
        doc = await mongo_db["idempotency_keys"].find_one({"device_id": device.id, "key": "ttl"})
        assert doc["state"] == "done"
        remaining = doc["expires_at"] - utcnow()
        assert timedelta(hours=23) < remaining <= timedelta(hours=24)


class TestLatestValues:
    async def test_late_reading_does_not_move_latest_back(
        self, engine: AIOEngine, batcher: IngestBatcher, settings: Settings, make_device: MakeDevice
    ) -> None:
        device = await make_device()
        await post(
            engine, batcher, device, settings, body({"ts": at(10), "metrics": {"temperature": 25}})
        )
        # A buffered upload arrives late with older readings, and one newer metric.
        await post(
            engine,
            batcher,
            device,
            settings,
            body(
                {"ts": at(1), "metrics": {"temperature": 5}},
                {"ts": at(2), "metrics": {"temperature": 6, "humidity": 50}},
            ),
        )
        latest = await queries.latest(engine, device_id=device.id)
        assert latest.metrics["temperature"].value == 25
        assert latest.metrics["humidity"].value == 50
        assert latest.ts is not None

    async def test_readings_under_a_second_apart_each_become_latest(
        self, engine: AIOEngine, batcher: IngestBatcher, settings: Settings, make_device: MakeDevice
    ) -> None:
        device = await make_device()
        start = datetime.now(UTC).replace(microsecond=100_000) - timedelta(minutes=1)
        for step in range(4):  # 250 ms apart, within one second
            ts = start + timedelta(milliseconds=250 * step)
            reading = {"ts": ts.isoformat(), "metrics": {"temperature": step, f"m{step}": step}}
            await post(engine, batcher, device, settings, body(reading))
            latest = await queries.latest(engine, device_id=device.id)
            assert latest.metrics["temperature"].value == step
            assert latest.ts == ts
        # ... and one 1 ms older than the newest, arriving last, changes nothing.
        late = {"ts": (ts - timedelta(milliseconds=1)).isoformat(), "metrics": {"temperature": 9}}
        await post(engine, batcher, device, settings, body(late))
        assert (await queries.latest(engine, device_id=device.id)).metrics["temperature"].value == 3

    async def test_suspect_values_are_marked(
        self, engine: AIOEngine, batcher: IngestBatcher, settings: Settings, make_device: MakeDevice
    ) -> None:
        device = await make_device()
        await post(engine, batcher, device, settings, body({"metrics": {"temperature": 500}}))
        latest = await queries.latest(engine, device_id=device.id)
        assert latest.metrics["temperature"].suspect

    async def test_device_without_readings_has_empty_latest(
        self, engine: AIOEngine, make_device: MakeDevice
    ) -> None:
        device = await make_device()
        latest = await queries.latest(engine, device_id=device.id)
        assert (latest.metrics, latest.ts) == ({}, None)


class TestPresence:
    async def test_ingest_sets_last_seen_once_per_throttle(
        self,
        engine: AIOEngine,
        settings: Settings,
        make_device: MakeDevice,
        mongo_db: MongoDatabase,
    ) -> None:
        device = await make_device()
        async with running_batcher(engine) as batcher:
            await post(engine, batcher, device, settings, body({"metrics": {"temperature": 1}}))
            first = (await mongo_db["devices"].find_one({"_id": ObjectId(device.id)}))["presence"]
            await post(engine, batcher, device, settings, body({"metrics": {"temperature": 2}}))
            second = (await mongo_db["devices"].find_one({"_id": ObjectId(device.id)}))["presence"]
        assert isinstance(first["last_seen_at"], datetime)
        assert second == first

    async def test_heartbeat_reports_status_and_keeps_it(
        self, engine: AIOEngine, settings: Settings, make_device: MakeDevice
    ) -> None:
        device = await make_device()
        unthrottled = settings.model_copy(update={"presence_throttle_s": 0})
        cache = DeviceContextCache(ttl_s=0)
        hb = await ingest.heartbeat(
            engine,
            device_id=device.id,
            heartbeat_in=HeartbeatIn(status="error", detail={"battery": 3.1}),
            settings=unthrottled,
            cache=cache,
        )
        assert (hb.reported_status, hb.detail) == ("error", {"battery": 3.1})
        again = await ingest.heartbeat(
            engine,
            device_id=device.id,
            heartbeat_in=HeartbeatIn(),
            settings=unthrottled,
            cache=cache,
        )
        assert again.reported_status == "error"
        assert again.last_seen_at is not None
        assert hb.last_seen_at is not None
        assert again.last_seen_at >= hb.last_seen_at
        cleared = await ingest.heartbeat(
            engine,
            device_id=device.id,
            heartbeat_in=HeartbeatIn(status=None),
            settings=unthrottled,
            cache=cache,
        )
        assert cleared.reported_status is None

    async def test_ingest_keeps_reported_status(
        self,
        engine: AIOEngine,
        settings: Settings,
        make_device: MakeDevice,
        mongo_db: MongoDatabase,
    ) -> None:
        old = utcnow() - timedelta(minutes=5)
        device = await make_device(
            presence={"last_seen_at": old, "reported_status": "error", "detail": {"e": "x"}}
        )
        async with running_batcher(engine) as batcher:
            await post(engine, batcher, device, settings, body({"metrics": {"temperature": 1}}))
        presence = (await mongo_db["devices"].find_one({"_id": ObjectId(device.id)}))["presence"]
        assert presence["reported_status"] == "error"
        assert presence["detail"] == {"e": "x"}
        assert presence["last_seen_at"] > old
