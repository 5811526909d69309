"""The device-context cache: kept until announced or aged out, never renewed by notes, unused
while its feed is not followed (the cross-process behaviour: tests/security/test_context_feed.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from bson import ObjectId
from odmantic import AIOEngine

from app.core.db import MongoDatabase
from app.readings.context import DeviceContextCache
from tests.fixtures.readings import MakeDevice, TestDevice

TTL_S = 300.0


def followed_cache() -> DeviceContextCache:
    """A cache whose feed is live (no Redis: announcements stay in this process)."""
    cache = DeviceContextCache(ttl_s=TTL_S)
    cache.feed_live(True)
    return cache


class Clock:
    """A monotonic clock the test advances."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


async def schema_changed_by_hand(mongo_db: MongoDatabase, product_id: str) -> None:
    """Forbid unknown metrics on the product straight in MongoDB: a change nobody announces."""
    await mongo_db.products.update_one(
        {"_id": ObjectId(product_id)}, {"$set": {"telemetry.allow_unknown": False}}
    )


async def allows_unknown(cache: DeviceContextCache, engine: AIOEngine, device_id: str) -> bool:
    """The schema the cache answers for the device: does it allow unknown metrics?"""
    context = await cache.context(engine, device_id)
    assert context is not None
    return context.telemetry.allow_unknown


@dataclass
class Held:
    """A device whose context `cache` holds, from before its schema was changed by hand."""

    device: TestDevice
    cache: DeviceContextCache
    clock: Clock


@pytest.fixture
async def held(engine: AIOEngine, make_device: MakeDevice, mongo_db: MongoDatabase) -> Held:
    device = await make_device()
    cache, clock = followed_cache(), Clock()
    cache.clock = clock
    assert await allows_unknown(cache, engine, device.id)
    await schema_changed_by_hand(mongo_db, device.context.product_id)
    return Held(device, cache, clock)


class TestKeptUntilChanged:
    async def test_kept_past_the_old_five_seconds_and_dropped_at_the_bound(
        self, engine: AIOEngine, held: Held
    ) -> None:
        held.clock.offset = TTL_S - 1
        assert await allows_unknown(held.cache, engine, held.device.id)
        held.clock.offset = TTL_S + 1
        assert not await allows_unknown(held.cache, engine, held.device.id)

    async def test_notes_never_renew_an_entry(self, engine: AIOEngine, held: Held) -> None:
        device_id = held.device.id
        held.clock.offset = TTL_S - 1
        held.cache.note_presence(device_id, {"reported_status": "ok"})
        held.cache.note_metrics(device_id, frozenset({"temperature"}))
        noted = await held.cache.context(engine, device_id)
        assert noted is not None
        assert (noted.presence, noted.known_metrics) == (
            {"reported_status": "ok"},
            frozenset({"temperature"}),
        )
        held.clock.offset = TTL_S + 1
        assert not await allows_unknown(held.cache, engine, device_id)

    async def test_a_product_announcement_drops_its_devices_only(
        self, engine: AIOEngine, held: Held, make_device: MakeDevice, mongo_db: MongoDatabase
    ) -> None:
        other = await make_device()
        await held.cache.context(engine, other.id)
        await schema_changed_by_hand(mongo_db, other.context.product_id)
        await held.cache.products_changed([held.device.context.product_id])
        assert not await allows_unknown(held.cache, engine, held.device.id)
        assert await allows_unknown(held.cache, engine, other.id)

    async def test_a_device_announcement_drops_it(self, engine: AIOEngine, held: Held) -> None:
        await held.cache.devices_changed([held.device.id])
        assert not await allows_unknown(held.cache, engine, held.device.id)


class TestWithoutTheFeed:
    async def test_every_context_is_read_while_the_feed_is_lost(
        self, engine: AIOEngine, held: Held
    ) -> None:
        held.cache.feed_live(False)
        assert not await allows_unknown(held.cache, engine, held.device.id)
        held.cache.feed_live(True)  # subscribed again: starts empty
        assert not await allows_unknown(held.cache, engine, held.device.id)
