"""The device-context cache: kept until announced or aged out, never renewed by notes, unused
while its feed is not followed (the cross-process behaviour: tests/security/test_context_feed.py).
"""

from __future__ import annotations

import time

from bson import ObjectId
from odmantic import AIOEngine

from app.core.db import MongoDatabase
from app.readings.context import DeviceContextCache
from tests.fixtures.readings import MakeDevice

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


class TestKeptUntilChanged:
    async def test_kept_past_the_old_five_seconds_and_dropped_at_the_bound(
        self, engine: AIOEngine, make_device: MakeDevice, mongo_db: MongoDatabase
    ) -> None:
        device = await make_device()
        cache, clock = followed_cache(), Clock()
        cache.clock = clock
        assert (await cache.context(engine, device.id)) is not None
        await schema_changed_by_hand(mongo_db, device.context.product_id)
        clock.offset = TTL_S - 1
        assert await allows_unknown(cache, engine, device.id)
        clock.offset = TTL_S + 1
        assert not await allows_unknown(cache, engine, device.id)

    async def test_notes_never_renew_an_entry(
        self, engine: AIOEngine, make_device: MakeDevice, mongo_db: MongoDatabase
    ) -> None:
        device = await make_device()
        cache, clock = followed_cache(), Clock()
        cache.clock = clock
        await cache.context(engine, device.id)
        await schema_changed_by_hand(mongo_db, device.context.product_id)
        clock.offset = TTL_S - 1
        cache.note_presence(device.id, {"reported_status": "ok"})
        cache.note_metrics(device.id, frozenset({"temperature"}))
        noted = await cache.context(engine, device.id)
        assert noted is not None
        assert (noted.presence, noted.known_metrics) == (
            {"reported_status": "ok"},
            frozenset({"temperature"}),
        )
        clock.offset = TTL_S + 1
        assert not await allows_unknown(cache, engine, device.id)

    async def test_a_product_announcement_drops_its_devices_only(
        self, engine: AIOEngine, make_device: MakeDevice, mongo_db: MongoDatabase
    ) -> None:
        changed, other = await make_device(), await make_device()
        cache = followed_cache()
        for device in (changed, other):
            await cache.context(engine, device.id)
            await schema_changed_by_hand(mongo_db, device.context.product_id)
        await cache.products_changed([changed.context.product_id])
        assert not await allows_unknown(cache, engine, changed.id)
        assert await allows_unknown(cache, engine, other.id)

    async def test_a_device_announcement_drops_it(
        self, engine: AIOEngine, make_device: MakeDevice, mongo_db: MongoDatabase
    ) -> None:
        device = await make_device()
        cache = followed_cache()
        await cache.context(engine, device.id)
        await schema_changed_by_hand(mongo_db, device.context.product_id)
        await cache.devices_changed([device.id])
        assert not await allows_unknown(cache, engine, device.id)


class TestWithoutTheFeed:
    async def test_every_context_is_read_while_the_feed_is_lost(
        self, engine: AIOEngine, make_device: MakeDevice, mongo_db: MongoDatabase
    ) -> None:
        device = await make_device()
        cache = followed_cache()
        await cache.context(engine, device.id)
        cache.feed_live(False)
        await schema_changed_by_hand(mongo_db, device.context.product_id)
        assert not await allows_unknown(cache, engine, device.id)
        cache.feed_live(True)  # subscribed again: starts empty
        assert not await allows_unknown(cache, engine, device.id)
