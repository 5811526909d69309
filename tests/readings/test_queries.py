"""History, aggregates and export through the service layer, on stored readings."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from motor.motor_asyncio import AsyncIOMotorClient
from odmantic import AIOEngine

from app.core.config import Settings
from app.core.db import MongoDatabase
from app.readings import export, queries, repository
from app.readings.exceptions import QueryInvalid
from tests.fixtures.proxy import TcpProxy
from tests.fixtures.readings import MakeDevice, TestDevice

T0 = datetime(2026, 3, 1, tzinfo=UTC)


async def store(
    mongo_db: MongoDatabase, device: TestDevice, rows: list[tuple[datetime, dict[str, Any]]]
) -> None:
    meta = {"device_id": device.id, "product_id": device.context.product_id}
    await mongo_db["readings"].insert_many([{"ts": ts, "meta": meta, "m": m} for ts, m in rows])


class TestHistory:
    async def test_pages_are_stable_across_equal_times(
        self, engine: AIOEngine, make_device: MakeDevice, mongo_db: MongoDatabase
    ) -> None:
        device = await make_device()
        rows = [(T0 + timedelta(minutes=i // 2), {"temperature": float(i)}) for i in range(9)]
        await store(mongo_db, device, rows)
        seen: list[float] = []
        cursor = None
        for _ in range(10):
            page = await queries.history(
                engine,
                device_id=device.id,
                start=T0,
                end=T0 + timedelta(hours=1),
                metrics=None,
                limit=2,
                cursor=cursor,
                descending=True,
                max_span=timedelta(days=366),
            )
            seen.extend(float(r.metrics["temperature"]) for r in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert sorted(seen) == [float(i) for i in range(9)]
        assert len(seen) == 9

    async def test_range_metrics_and_order(
        self, engine: AIOEngine, make_device: MakeDevice, mongo_db: MongoDatabase
    ) -> None:
        device = await make_device()
        other = await make_device()
        await store(
            mongo_db,
            device,
            [
                (T0 - timedelta(minutes=1), {"temperature": 0.0}),
                (T0, {"temperature": 1.0}),
                (T0 + timedelta(minutes=1), {"humidity": 50.0}),
                (T0 + timedelta(minutes=2), {"temperature": 3.0, "humidity": 51.0}),
                (T0 + timedelta(minutes=3), {"temperature": 4.0}),
            ],
        )
        await store(mongo_db, other, [(T0, {"temperature": 99.0})])
        page = await queries.history(
            engine,
            device_id=device.id,
            start=T0,
            end=T0 + timedelta(minutes=3),
            metrics=["temperature"],
            limit=10,
            cursor=None,
            descending=False,
            max_span=timedelta(days=366),
        )
        assert [(r.ts, r.metrics) for r in page.items] == [
            (T0, {"temperature": 1.0}),
            (T0 + timedelta(minutes=2), {"temperature": 3.0}),
        ]
        assert page.next_cursor is None

    async def test_default_range_is_last_day(
        self, engine: AIOEngine, make_device: MakeDevice, mongo_db: MongoDatabase
    ) -> None:
        device = await make_device()
        now = datetime.now(UTC)
        await store(
            mongo_db,
            device,
            [
                (now - timedelta(hours=25), {"temperature": 1.0}),
                (now - timedelta(hours=1), {"temperature": 2.0}),
            ],
        )
        page = await queries.history(
            engine,
            device_id=device.id,
            start=None,
            end=None,
            metrics=None,
            limit=10,
            cursor=None,
            descending=True,
            max_span=timedelta(days=366),
        )
        assert [r.metrics["temperature"] for r in page.items] == [2.0]

    async def test_cursor_of_other_order_is_refused(
        self, engine: AIOEngine, make_device: MakeDevice, mongo_db: MongoDatabase
    ) -> None:
        device = await make_device()
        await store(
            mongo_db, device, [(T0 + timedelta(seconds=i), {"temperature": 1.0}) for i in range(3)]
        )
        page = await queries.history(
            engine,
            device_id=device.id,
            start=T0,
            end=T0 + timedelta(hours=1),
            metrics=None,
            limit=1,
            cursor=None,
            descending=True,
            max_span=timedelta(days=366),
        )
        assert page.next_cursor
        with pytest.raises(QueryInvalid):
            await queries.history(
                engine,
                device_id=device.id,
                start=T0,
                end=T0 + timedelta(hours=1),
                metrics=None,
                limit=1,
                cursor=page.next_cursor,
                descending=False,
                max_span=timedelta(days=366),
            )
        with pytest.raises(QueryInvalid):
            await queries.history(
                engine,
                device_id=device.id,
                start=T0,
                end=T0 + timedelta(hours=1),
                metrics=None,
                limit=1,
                cursor="garbage",
                descending=True,
                max_span=timedelta(days=366),
            )


async def agg(engine: AIOEngine, device: TestDevice, **kwargs: Any) -> Any:
    params: dict[str, Any] = {
        "start": T0,
        "end": T0 + timedelta(hours=1),
        "interval": "15m",
        "functions": ["sum", "count", "avg", "min", "max", "first", "last"],
        "metrics": ["temperature"],
        "tz": "UTC",
        "fill": False,
        "max_buckets": 1000,
    }
    params.update(kwargs)
    limits = {"max_cells": 1_000_000, "max_span": timedelta(days=3660)}
    return await queries.aggregate(engine, context=device.context, **{**limits, **params})


class TestAggregates:
    async def test_known_sums_across_a_bucket_boundary(
        self, engine: AIOEngine, make_device: MakeDevice, mongo_db: MongoDatabase
    ) -> None:
        device = await make_device()
        # 14:59.999 belongs to the first bucket, 15:00.000 to the second.
        await store(
            mongo_db,
            device,
            [
                (T0 + timedelta(minutes=1), {"temperature": 1.0}),
                (T0 + timedelta(minutes=14, seconds=59, milliseconds=999), {"temperature": 2.0}),
                (T0 + timedelta(minutes=15), {"temperature": 10.0}),
                (T0 + timedelta(minutes=16), {"temperature": 20.0, "humidity": 5.0}),
                (T0 + timedelta(minutes=50), {"humidity": 7.0}),
            ],
        )
        result = await agg(engine, device)
        assert [b.start for b in result.buckets] == [T0, T0 + timedelta(minutes=15)]
        first, second = (b.values["temperature"] for b in result.buckets)
        assert first == {
            "sum": 3.0,
            "count": 2,
            "avg": 1.5,
            "min": 1.0,
            "max": 2.0,
            "first": 1.0,
            "last": 2.0,
        }
        assert second == {
            "sum": 30.0,
            "count": 2,
            "avg": 15.0,
            "min": 10.0,
            "max": 20.0,
            "first": 10.0,
            "last": 20.0,
        }

    async def test_fill_null_and_default_metrics(
        self, engine: AIOEngine, make_device: MakeDevice, mongo_db: MongoDatabase
    ) -> None:
        device = await make_device()
        await store(
            mongo_db, device, [(T0 + timedelta(minutes=31), {"temperature": 4.0, "label": "x"})]
        )
        result = await agg(engine, device, fill=True, metrics=None, functions=["avg", "count"])
        assert result.metrics == ["temperature", "humidity"]
        assert len(result.buckets) == 4
        assert result.buckets[0].values["temperature"] == {"avg": None, "count": 0}
        assert result.buckets[2].values["temperature"] == {"avg": 4.0, "count": 1}

    async def test_days_in_a_time_zone_across_dst(
        self, engine: AIOEngine, make_device: MakeDevice, mongo_db: MongoDatabase
    ) -> None:
        """Europe/Berlin switches to summer time on 2026-03-29: that day has 23 hours."""
        device = await make_device()
        berlin = ZoneInfo("Europe/Berlin")
        local = [
            datetime(2026, 3, 28, 0, 30, tzinfo=berlin),  # 27th 23:30 UTC, day 28 local
            datetime(2026, 3, 28, 23, 59, tzinfo=berlin),
            datetime(2026, 3, 29, 0, 0, tzinfo=berlin),  # 28th 23:00 UTC
            datetime(2026, 3, 29, 12, 0, tzinfo=berlin),
            datetime(2026, 3, 29, 23, 30, tzinfo=berlin),  # 21:30 UTC (CEST)
            datetime(2026, 3, 30, 0, 15, tzinfo=berlin),  # 29th 22:15 UTC
        ]
        values = [1.0, 2.0, 10.0, 20.0, 30.0, 100.0]
        await store(
            mongo_db,
            device,
            [(t.astimezone(UTC), {"temperature": v}) for t, v in zip(local, values, strict=True)],
        )
        result = await agg(
            engine,
            device,
            start=datetime(2026, 3, 28, tzinfo=berlin),
            end=datetime(2026, 3, 31, tzinfo=berlin),
            interval="1d",
            tz="Europe/Berlin",
            functions=["sum", "count"],
        )
        starts = [b.start for b in result.buckets]
        assert starts == [
            datetime(2026, 3, 27, 23, tzinfo=UTC),
            datetime(2026, 3, 28, 23, tzinfo=UTC),
            datetime(2026, 3, 29, 22, tzinfo=UTC),
        ]
        assert [b.values["temperature"]["sum"] for b in result.buckets] == [3.0, 60.0, 100.0]
        assert result.buckets[1].end - result.buckets[1].start == timedelta(hours=23)

    async def test_months_and_weeks_start_at_local_midnight(
        self, engine: AIOEngine, make_device: MakeDevice, mongo_db: MongoDatabase
    ) -> None:
        device = await make_device()
        ny = ZoneInfo("America/New_York")
        await store(
            mongo_db,
            device,
            [
                (datetime(2026, 2, 28, 23, 0, tzinfo=ny).astimezone(UTC), {"temperature": 1.0}),
                (datetime(2026, 3, 1, 0, 30, tzinfo=ny).astimezone(UTC), {"temperature": 2.0}),
                (datetime(2026, 3, 31, 23, 0, tzinfo=ny).astimezone(UTC), {"temperature": 3.0}),
            ],
        )
        months = await agg(
            engine,
            device,
            start=datetime(2026, 2, 1, tzinfo=ny),
            end=datetime(2026, 4, 1, tzinfo=ny),
            interval="1mo",
            tz="America/New_York",
            functions=["sum"],
        )
        assert [(b.start, b.values["temperature"]["sum"]) for b in months.buckets] == [
            (datetime(2026, 2, 1, 5, tzinfo=UTC), 1.0),
            (datetime(2026, 3, 1, 5, tzinfo=UTC), 5.0),
        ]
        weeks = await agg(
            engine,
            device,
            start=datetime(2026, 2, 25, tzinfo=ny),
            end=datetime(2026, 3, 5, tzinfo=ny),
            interval="1w",
            tz="America/New_York",
            functions=["count"],
            fill=True,
        )
        # Saturday 28 February and Sunday 1 March are in the week starting Monday 23 February.
        assert [
            (b.start.astimezone(ny), b.values["temperature"]["count"]) for b in weeks.buckets
        ] == [
            (datetime(2026, 2, 23, tzinfo=ny), 2),
            (datetime(2026, 3, 2, tzinfo=ny), 0),
        ]

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"interval": "1s", "end": T0 + timedelta(days=1)}, "buckets"),
            ({"interval": "7x"}, "interval"),
            ({"tz": "Mars/Olympus"}, "time zone"),
            ({"functions": ["median"]}, "agg"),
            ({"end": T0}, "before"),
        ],
    )
    async def test_bad_queries(
        self, kwargs: dict[str, Any], message: str, engine: AIOEngine, make_device: MakeDevice
    ) -> None:
        device = await make_device()
        with pytest.raises(QueryInvalid, match=message):
            await agg(engine, device, **kwargs)


class TestExport:
    async def test_csv_has_one_column_per_metric(
        self, engine: AIOEngine, make_device: MakeDevice, mongo_db: MongoDatabase
    ) -> None:
        device = await make_device()
        await store(
            mongo_db,
            device,
            [
                (
                    T0 + timedelta(seconds=i),
                    {"temperature": float(i), **({"humidity": 50.0} if i % 2 else {})},
                )
                for i in range(1200)
            ],
        )
        columns = await export.columns(engine, context=device.context, metrics=None)
        chunks = [
            c
            async for c in export.stream_csv(
                engine, device_id=device.id, start=T0, end=T0 + timedelta(hours=1), columns=columns
            )
        ]
        assert len(chunks) > 1
        rows = list(csv.reader(io.StringIO("".join(chunks))))
        assert rows[0] == ["ts", "temperature", "humidity", "quality"]
        assert rows[1] == ["2026-03-01T00:00:00.000Z", "0.0", "", ""]
        assert rows[2] == ["2026-03-01T00:00:01.000Z", "1.0", "50.0", ""]
        assert len(rows) == 1201

    async def test_days_and_pages_keep_time_then_id_order(
        self, engine: AIOEngine, make_device: MakeDevice, mongo_db: MongoDatabase
    ) -> None:
        device = await make_device()
        # Three days, stored newest first, with runs of equal times across page edges.
        rows = [(T0 + timedelta(hours=9 * (i // 4)), {"temperature": float(i)}) for i in range(28)]
        await store(mongo_db, device, rows[::-1])
        everything = [doc async for doc in mongo_db["readings"].find({"meta.device_id": device.id})]
        expected = [doc["_id"] for doc in sorted(everything, key=lambda d: (d["ts"], d["_id"]))]
        got = [
            doc["_id"]
            async for doc in repository.iter_readings(
                engine, device.id, start=T0, end=T0 + timedelta(days=4), page_size=3
            )
        ]
        assert got == expected

    async def test_a_failure_mid_stream_ends_with_a_visible_last_line(
        self,
        make_device: MakeDevice,
        mongo_db: MongoDatabase,
        mongodb_url: str,
        settings: Settings,
    ) -> None:
        device = await make_device()
        await store(
            mongo_db, device, [(T0 + timedelta(seconds=i), {"temperature": 1.0}) for i in range(50)]
        )
        proxy = TcpProxy.for_url(mongodb_url)
        await proxy.start()
        client: Any = AsyncIOMotorClient(proxy.url, tz_aware=True, timeoutMS=1000)
        try:
            engine = AIOEngine(client=client, database=settings.mongodb_db)
            chunks = []
            async for chunk in export.stream_csv(
                engine,
                device_id=device.id,
                start=T0,
                end=T0 + timedelta(hours=1),
                columns=["temperature"],
                rows_per_chunk=10,
                page_size=20,
            ):
                chunks.append(chunk)
                proxy.refuse = True  # the database goes away after the first rows were sent
        finally:
            client.close()
            await proxy.stop()
        lines = "".join(chunks).splitlines()
        assert 20 <= len(lines) - 2 < 50  # some rows, not all
        assert lines[-1].startswith(f"{export.INCOMPLETE_MARKER} ")
        assert lines[-1].endswith(f"resume with start={lines[-2].split(',')[0]}")


class TestFirstAndLast:
    async def test_follow_time_not_storage_order(
        self, engine: AIOEngine, make_device: MakeDevice, mongo_db: MongoDatabase
    ) -> None:
        device = await make_device()
        rows = [(T0 + timedelta(minutes=m), {"temperature": float(m)}) for m in (7, 1, 14, 3, 0, 9)]
        await store(mongo_db, device, rows)
        result = await agg(engine, device)
        [bucket] = result.buckets
        assert bucket.values["temperature"]["first"] == 0.0
        assert bucket.values["temperature"]["last"] == 14.0
