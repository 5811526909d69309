"""Latest values are served from a Redis copy written by the ingest flush; MongoDB stays the
source of truth, and late data never moves a value back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from app.core.models import epoch_ms
from app.core.services import services_of
from app.readings import latest_cache
from tests.fixtures.readings import MakeDevice, TestDevice

API = "/api/v1"


def at(minutes: float) -> str:
    """A time `minutes` after an hour ago."""
    return (datetime.now(UTC) - timedelta(hours=1) + timedelta(minutes=minutes)).isoformat()


async def post(client: httpx.AsyncClient, device: TestDevice, *readings: dict[str, Any]) -> None:
    """Post readings as the device; they are stored when this returns."""
    resp = await client.post(
        f"{API}/devices/{device.id}/readings",
        json={"readings": list(readings)},
        headers=device.headers,
    )
    assert resp.status_code == 202, resp.text


async def latest(
    client: httpx.AsyncClient, device: TestDevice, master_headers: dict[str, str]
) -> dict[str, Any]:
    """The device's latest values as a user sees them."""
    resp = await client.get(f"{API}/devices/{device.id}/readings/latest", headers=master_headers)
    assert resp.status_code == 200, resp.text
    values: dict[str, Any] = resp.json()["metrics"]
    return {name: entry["value"] for name, entry in values.items()}


class TestLatestFromRedis:
    async def test_late_data_never_moves_a_value_back(
        self,
        client: httpx.AsyncClient,
        make_device: MakeDevice,
        master_headers: dict[str, str],
        app: FastAPI,
    ) -> None:
        device = await make_device()
        await post(client, device, {"ts": at(10), "metrics": {"temperature": 25}})
        assert await latest(client, device, master_headers) == {"temperature": 25}
        redis = services_of(app).redis
        assert await redis.exists(latest_cache.PREFIX + device.id)  # served from the copy now
        await post(
            client,
            device,
            {"ts": at(1), "metrics": {"temperature": 5}},
            {"ts": at(2), "metrics": {"temperature": 6, "humidity": 50}},
        )
        assert await latest(client, device, master_headers) == {"temperature": 25, "humidity": 50}
        await post(client, device, {"ts": at(11), "metrics": {"temperature": 26}})
        assert await latest(client, device, master_headers) == {"temperature": 26, "humidity": 50}

    async def test_a_lost_copy_is_filled_again_from_mongodb(
        self,
        client: httpx.AsyncClient,
        make_device: MakeDevice,
        master_headers: dict[str, str],
        app: FastAPI,
    ) -> None:
        device = await make_device()
        await post(client, device, {"ts": at(5), "metrics": {"temperature": 21, "humidity": 40}})
        await latest(client, device, master_headers)
        redis = services_of(app).redis
        await redis.delete(latest_cache.PREFIX + device.id)  # evicted, or Redis restarted
        # A flush while there is no copy does not make a partial one ...
        await post(client, device, {"ts": at(6), "metrics": {"temperature": 22}})
        assert not await redis.exists(latest_cache.PREFIX + device.id)
        # ... the next read answers from MongoDB, whole, and fills the copy.
        assert await latest(client, device, master_headers) == {"temperature": 22, "humidity": 40}
        assert await redis.exists(latest_cache.PREFIX + device.id)
        assert await latest(client, device, master_headers) == {"temperature": 22, "humidity": 40}

    async def test_a_fill_racing_a_flush_stores_nothing(
        self, client: httpx.AsyncClient, make_device: MakeDevice, app: FastAPI
    ) -> None:
        # A read found no copy, took a fill token and read MongoDB; before it stores what it
        # read, a flush writes newer values: the flush voids the token, the fill is dropped.
        device = await make_device()
        values = services_of(app).latest_values
        redis = services_of(app).redis
        fill_key = latest_cache.PREFIX + "fill:" + device.id
        await redis.set(fill_key, "token-of-the-read")
        newer = {"temperature": {"ts": datetime.now(UTC), "v": 30}}
        await values.offer({device.id: newer})
        older = {"temperature": {"ts": datetime.now(UTC) - timedelta(minutes=5), "v": 1}}
        stored = await values._fill(
            keys=[latest_cache.PREFIX + device.id, fill_key],
            args=["token-of-the-read", 60, *latest_cache._triples(older)],
        )
        assert stored == 0
        assert not await redis.exists(latest_cache.PREFIX + device.id)


class TestOfferOfAFlush:
    async def test_one_call_serves_each_device_as_its_own(self, app: FastAPI) -> None:
        # One flush offers three devices in one script call: a copy gets only its newer
        # values, a device without a copy gets none and its fill token is voided, and each
        # device's values land in its own copy.
        values = services_of(app).latest_values
        redis = services_of(app).redis
        now = datetime.now(UTC)
        older, newer = now - timedelta(minutes=5), now
        kept, missing, other = (f"offer-{name}-{now.timestamp()}" for name in "kmo")
        await redis.hset(
            latest_cache.PREFIX + kept,
            mapping={
                latest_cache.READY: "1",
                "temperature": f"{epoch_ms(older)}|" + '{"v":1}',
                "humidity": f"{epoch_ms(newer)}|" + '{"v":50}',
            },
        )
        await redis.hset(latest_cache.PREFIX + other, mapping={latest_cache.READY: "1"})
        await redis.set(latest_cache.PREFIX + "fill:" + missing, "token-of-a-read")
        await values.offer(
            {
                kept: {"temperature": {"ts": newer, "v": 2}, "humidity": {"ts": older, "v": 9}},
                missing: {"temperature": {"ts": newer, "v": 3}},
                other: {"pressure": {"ts": newer, "v": 1013, "suspect": True}},
            }
        )
        read = await values.read(services_of(app).engine, kept)
        assert read is not None
        assert {k: v["v"] for k, v in read["m"].items()} == {"temperature": 2, "humidity": 50}
        assert not await redis.exists(latest_cache.PREFIX + missing)
        assert not await redis.exists(latest_cache.PREFIX + "fill:" + missing)
        read = await values.read(services_of(app).engine, other)
        assert read is not None
        assert read["m"]["pressure"]["v"] == 1013
        assert read["m"]["pressure"]["suspect"] is True
