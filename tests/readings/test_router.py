"""Readings over HTTP: device keys, bad input, idempotency, rate limits, user-side queries."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from bson import ObjectId

from app.core.config import Settings
from app.core.db import MongoDatabase
from tests.fixtures.readings import MakeDevice, TestDevice

NOW = datetime.now(UTC).replace(microsecond=0)


def path(device: TestDevice | str, suffix: str = "readings") -> str:
    device_id = device if isinstance(device, str) else device.id
    return f"/api/v1/devices/{device_id}/{suffix}"


async def count(mongo_db: MongoDatabase, device: TestDevice) -> int:
    return await mongo_db["readings"].count_documents({"meta.device_id": device.id})


class TestDeviceSide:
    async def test_single_reading_is_accepted(
        self, client: httpx.AsyncClient, make_device: MakeDevice, mongo_db: MongoDatabase
    ) -> None:
        device = await make_device()
        resp = await client.post(
            path(device), json={"metrics": {"temperature": 21.5}}, headers=device.headers
        )
        assert resp.status_code == 202, resp.text
        assert resp.json() == {"accepted": 1, "rejected": 0, "errors": []}
        assert await count(mongo_db, device) == 1

    async def test_flush_sizes_are_on_the_metrics_page(
        self, client: httpx.AsyncClient, make_device: MakeDevice
    ) -> None:
        async def flushed() -> tuple[float, float]:
            text = (await client.get("/metrics")).text
            found = re.findall(r"^sensorhub_ingest_flush_readings_(sum|count) (\S+)$", text, re.M)
            values = dict(found)
            return float(values["sum"]), float(values["count"])

        device = await make_device()
        before = await flushed()
        batch = {"readings": [{"metrics": {"temperature": t}} for t in (20, 21, 22)]}
        resp = await client.post(path(device), json=batch, headers=device.headers)
        assert resp.status_code == 202, resp.text
        readings, flushes = (a - b for a, b in zip(await flushed(), before, strict=True))
        assert (readings, flushes) == (3, 1)

    async def test_bearer_device_key_works(
        self, client: httpx.AsyncClient, make_device: MakeDevice
    ) -> None:
        device = await make_device()
        resp = await client.post(
            path(device),
            json={"readings": [{"metrics": {"temperature": 1}}, {"metrics": {"humidity": 2}}]},
            headers={"Authorization": f"Bearer {device.key}"},
        )
        assert resp.json()["accepted"] == 2

    async def test_other_devices_id_is_404_and_stores_nothing(
        self, client: httpx.AsyncClient, make_device: MakeDevice, mongo_db: MongoDatabase
    ) -> None:
        mine, other = await make_device(), await make_device()
        for target, code in ((other.id, 404), (str(ObjectId()), 404), ("not-an-id", 422)):
            resp = await client.post(
                path(target), json={"metrics": {"temperature": 1}}, headers=mine.headers
            )
            assert resp.status_code == code
            assert resp.headers["content-type"] == "application/problem+json"
        resp = await client.post(path(other, "heartbeat"), json={}, headers=mine.headers)
        assert resp.status_code == 404
        assert await count(mongo_db, other) == 0

    async def test_without_key_is_401(
        self, client: httpx.AsyncClient, make_device: MakeDevice
    ) -> None:
        device = await make_device()
        resp = await client.post(path(device), json={"metrics": {"temperature": 1}})
        assert resp.status_code == 401

    async def test_users_may_not_post_readings(
        self, client: httpx.AsyncClient, make_device: MakeDevice, master_headers: dict[str, str]
    ) -> None:
        device = await make_device()
        resp = await client.post(
            path(device), json={"metrics": {"temperature": 1}}, headers=master_headers
        )
        assert resp.status_code == 403


class TestBadInput:
    @pytest.mark.parametrize(
        ("raw", "problem"),
        [
            (b'{"metrics": {"temperature": NaN}}', "malformed-json"),
            (b'{"metrics": {"temperature": Infinity}}', "malformed-json"),
            (b'{"metrics": {"temperature": 1e999}}', "readings-invalid"),
            (b'{"metrics": {"temperature": "warm"}}', "readings-invalid"),
            (b'{"metrics": {}}', "readings-invalid"),
            (b'{"ts": "2026-03-01T10:00:00", "metrics": {"temperature": 1}}', "readings-invalid"),
            (b"[1, 2]", "readings-invalid"),
            (b"not json", "malformed-json"),
        ],
    )
    async def test_rejected_as_a_whole(
        self,
        raw: bytes,
        problem: str,
        client: httpx.AsyncClient,
        make_device: MakeDevice,
        mongo_db: MongoDatabase,
    ) -> None:
        device = await make_device()
        resp = await client.post(
            path(device),
            content=raw,
            headers={**device.headers, "Content-Type": "application/json"},
        )
        assert resp.status_code == 422, resp.text
        assert resp.json()["type"] == f"/problems/{problem}"
        assert await count(mongo_db, device) == 0

    async def test_offending_index_of_a_batch(
        self, client: httpx.AsyncClient, make_device: MakeDevice, mongo_db: MongoDatabase
    ) -> None:
        device = await make_device()
        future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        batch = {
            "readings": [
                {"metrics": {"temperature": 1}},
                {"ts": future, "metrics": {"temperature": 2}},
                {"metrics": {"temperature": 3}},
            ]
        }
        resp = await client.post(path(device), json=batch, headers=device.headers)
        assert resp.status_code == 422
        [error] = resp.json()["errors"]
        assert (error["index"], error["loc"]) == (1, ["body", "readings", 1, "ts"])
        assert await count(mongo_db, device) == 0

    async def test_batch_over_the_cap(
        self,
        client: httpx.AsyncClient,
        make_device: MakeDevice,
        settings: Settings,
        mongo_db: MongoDatabase,
    ) -> None:
        device = await make_device()
        batch = {"readings": [{"metrics": {"t": 1}}] * (settings.readings_max_batch + 1)}
        resp = await client.post(path(device), json=batch, headers=device.headers)
        assert resp.status_code == 422
        assert resp.json()["errors"][0]["type"] == "too_long"
        assert await count(mongo_db, device) == 0

    async def test_body_over_the_size_cap(
        self,
        client: httpx.AsyncClient,
        make_device: MakeDevice,
        settings: Settings,
        mongo_db: MongoDatabase,
    ) -> None:
        device = await make_device()
        padding = "x" * 200
        n = settings.max_body_bytes // 200 + 10
        batch = {"readings": [{"metrics": {"s": padding}}] * n}
        resp = await client.post(path(device), json=batch, headers=device.headers)
        assert resp.status_code == 413
        assert await count(mongo_db, device) == 0

    async def test_partial_rejection_in_the_answer(
        self, client: httpx.AsyncClient, make_device: MakeDevice
    ) -> None:
        device = await make_device(allow_unknown=False)
        batch = {"readings": [{"metrics": {"temperature": 1}}, {"metrics": {"co2": 1}}]}
        resp = await client.post(path(device), json=batch, headers=device.headers)
        assert resp.status_code == 202
        assert resp.json()["errors"] == [
            {"index": 1, "reason": "unknown-metric", "detail": "metric 'co2' is not in the schema"}
        ]


class TestIdempotencyOverHttp:
    async def test_retry_storm_stores_once(
        self, client: httpx.AsyncClient, make_device: MakeDevice, mongo_db: MongoDatabase
    ) -> None:
        device = await make_device()
        batch = {
            "readings": [
                {"ts": (NOW - timedelta(minutes=i)).isoformat(), "metrics": {"temperature": i}}
                for i in range(50)
            ]
        }
        headers = {**device.headers, "Idempotency-Key": "storm-1"}
        answers = await asyncio.gather(
            *(client.post(path(device), json=batch, headers=headers) for _ in range(5))
        )
        assert [a.status_code for a in answers] == [202] * 5
        assert {a.text for a in answers} == {answers[0].text}
        assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 4
        assert await count(mongo_db, device) == 50

    async def test_reused_key_with_other_body(
        self, client: httpx.AsyncClient, make_device: MakeDevice
    ) -> None:
        device = await make_device()
        headers = {**device.headers, "Idempotency-Key": "k1"}
        await client.post(path(device), json={"metrics": {"temperature": 1}}, headers=headers)
        resp = await client.post(
            path(device), json={"metrics": {"temperature": 2}}, headers=headers
        )
        assert resp.status_code == 422
        assert resp.json()["type"] == "/problems/idempotency-key-reused"


class TestRateLimit:
    async def test_product_ingest_limit(
        self, client: httpx.AsyncClient, make_device: MakeDevice
    ) -> None:
        device = await make_device(ingest_limit_per_minute=2)
        statuses = []
        for _ in range(3):
            resp = await client.post(
                path(device), json={"metrics": {"temperature": 1}}, headers=device.headers
            )
            statuses.append(resp.status_code)
        assert statuses == [202, 202, 429]
        assert int(resp.headers["Retry-After"]) > 0
        assert '"device";q=2;w=60' in resp.headers["RateLimit-Policy"]


class TestHeartbeat:
    async def test_status_is_derived(
        self, client: httpx.AsyncClient, make_device: MakeDevice
    ) -> None:
        device = await make_device()
        resp = await client.post(path(device, "heartbeat"), headers=device.headers)
        assert resp.status_code == 200, resp.text
        assert (resp.json()["status"], resp.json()["reported_status"]) == ("online", None)
        resp = await client.post(
            path(device, "heartbeat"),
            json={"status": "error", "detail": {"code": "E42"}},
            headers=device.headers,
        )
        assert resp.json()["status"] == "error"
        assert resp.json()["detail"] == {"code": "E42"}

    async def test_bad_heartbeat(self, client: httpx.AsyncClient, make_device: MakeDevice) -> None:
        device = await make_device()
        resp = await client.post(
            path(device, "heartbeat"), json={"status": "sleepy"}, headers=device.headers
        )
        assert resp.status_code == 422


class TestUserSide:
    async def _seed(self, client: httpx.AsyncClient, device: TestDevice) -> None:
        readings = [
            {"ts": (NOW - timedelta(minutes=10 - i)).isoformat(), "metrics": {"temperature": i}}
            for i in range(10)
        ]
        resp = await client.post(path(device), json={"readings": readings}, headers=device.headers)
        assert resp.status_code == 202

    async def test_history_latest_aggregate_export(
        self, client: httpx.AsyncClient, make_device: MakeDevice, master_headers: dict[str, str]
    ) -> None:
        device = await make_device()
        await self._seed(client, device)
        page = await client.get(path(device), params={"limit": 4}, headers=master_headers)
        assert page.status_code == 200, page.text
        assert [r["metrics"]["temperature"] for r in page.json()["items"]] == [9, 8, 7, 6]
        nxt = await client.get(
            path(device),
            params={"limit": 4, "cursor": page.json()["next_cursor"]},
            headers=master_headers,
        )
        assert [r["metrics"]["temperature"] for r in nxt.json()["items"]] == [5, 4, 3, 2]

        latest = await client.get(path(device, "readings/latest"), headers=master_headers)
        assert latest.json()["metrics"]["temperature"]["value"] == 9

        start = (NOW - timedelta(hours=1)).isoformat()
        agg = await client.get(
            path(device, "readings/aggregate"),
            params={"start": start, "end": NOW.isoformat(), "interval": "1h", "agg": "sum,count"},
            headers=master_headers,
        )
        assert agg.status_code == 200, agg.text
        totals = [b["values"]["temperature"] for b in agg.json()["buckets"]]
        assert sum(t["sum"] for t in totals) == 45
        assert sum(t["count"] for t in totals) == 10

        export = await client.get(
            path(device, "readings/export"), params={"format": "csv"}, headers=master_headers
        )
        assert export.status_code == 200
        assert export.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(export.text)))
        assert rows[0] == ["ts", "temperature", "humidity", "quality"]
        assert len(rows) == 11

    @pytest.mark.parametrize(
        ("suffix", "params"),
        [
            ("readings", {"limit": 100_000}),
            ("readings", {"start": "2026-03-01T00:00:00"}),
            ("readings", {"cursor": "bogus"}),
            ("readings/aggregate", {"interval": "1s", "start": "2020-01-01T00:00:00Z"}),
            ("readings/aggregate", {"tz": "Nowhere/Special"}),
            ("readings/aggregate", {"agg": "median"}),
            ("readings/export", {"format": "xlsx"}),
        ],
    )
    async def test_bad_queries(
        self,
        suffix: str,
        params: dict[str, Any],
        client: httpx.AsyncClient,
        make_device: MakeDevice,
        master_headers: dict[str, str],
    ) -> None:
        device = await make_device()
        resp = await client.get(path(device, suffix), params=params, headers=master_headers)
        assert resp.status_code == 422, resp.text

    async def test_device_hidden_from_other_users(
        self,
        client: httpx.AsyncClient,
        make_device: MakeDevice,
        make_user: Callable[..., Any],
    ) -> None:
        device = await make_device()
        stranger = await make_user()
        resp = await client.get(
            path(device, "readings/latest"),
            headers={"Authorization": f"Bearer {stranger.id_token}"},
        )
        assert resp.status_code == 404
