"""Device keys are looked up once and cached, yet a rotated or deleted key stops at once on
every API process; without the revocation feed nothing is served from the cache."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from odmantic import AIOEngine

from app.auth import device_keys
from app.auth.key_cache import DeviceKeyCache
from app.catalog.devices import service as devices_service
from app.catalog.folders import service as folders_service
from app.catalog.models import Device
from app.core.config import Settings
from app.core.db import MongoDatabase
from app.core.services import services_of
from tests.fixtures.app import client_for
from tests.fixtures.catalog import new_device, new_folder, new_product, user_principal
from tests.fixtures.servers import ManagedProcess, start_redis
from tests.fixtures.worker import eventually

API = "/api/v1"


async def status_of(http: httpx.AsyncClient, device: Device, key: str) -> int:
    """What a device request with `key` answers (its own device, read side)."""
    resp = await http.get(f"{API}/devices/{device.id}", headers={"X-Device-Key": key})
    return resp.status_code


async def a_device(engine: AIOEngine) -> tuple[Device, str]:
    """A device (and its key) of a fresh user's fresh product."""
    owner = user_principal()
    return await new_device(engine, owner=owner, product=await new_product(engine, owner=owner))


async def change_key_by_hand(mongo_db: MongoDatabase, device: Device) -> None:
    """Give the device another key straight in MongoDB: a change nobody announces."""
    new_hash = device_keys.generate().key_hash
    await mongo_db.devices.update_one({"_id": device.id}, {"$set": {"key_hash": new_hash}})


async def answers(http: httpx.AsyncClient, device: Device, key: str, expected: int) -> bool:
    """True when a device request with `key` answers `expected`."""
    return await status_of(http, device, key) == expected


@pytest.fixture
async def other_process(
    make_settings: Callable[..., Settings], app_with: Any
) -> AsyncIterator[FastAPI]:
    """A second app on the same MongoDB and Redis: another API process of the deployment."""
    async with app_with(make_settings()) as other:
        await eventually(lambda: services_of(other).device_keys.live)
        yield other


# Revocations cross a socket to the other processes: they arrive within milliseconds, so the
# tests poll (`eventually`) rather than expect the very next instruction to see them.


ApiWithCacheTtl = Callable[[float], AbstractAsyncContextManager[tuple[FastAPI, httpx.AsyncClient]]]


@pytest.fixture
def api_with_cache_ttl(make_settings: Callable[..., Settings], app_with: Any) -> ApiWithCacheTtl:
    """`async with api_with_cache_ttl(ttl_s) as (app, http):` an app with that key-cache TTL."""

    @asynccontextmanager
    async def start(ttl_s: float) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
        async with (
            app_with(make_settings(device_key_cache_s=ttl_s)) as app,
            client_for(app) as http,
        ):
            yield app, http

    return start


class TestRevocationReachesEveryProcess:
    async def test_rotation_on_one_process_stops_the_key_on_another(
        self, app: FastAPI, other_process: FastAPI, engine: AIOEngine
    ) -> None:
        device, old_key = await a_device(engine)
        async with client_for(other_process) as there:
            assert await status_of(there, device, old_key) == 200  # now cached there
            new_key = (
                await devices_service.rotate_key(
                    engine, device=device, key_cache=services_of(app).device_keys
                )
            ).key
            await eventually(lambda: answers(there, device, old_key, 401))
            assert await status_of(there, device, new_key) == 200

    async def test_deleting_a_device_stops_its_key_everywhere(
        self, app: FastAPI, other_process: FastAPI, engine: AIOEngine
    ) -> None:
        device, key = await a_device(engine)
        async with client_for(other_process) as there, client_for(app) as here:
            assert await status_of(there, device, key) == 200
            assert await status_of(here, device, key) == 200
            await devices_service.delete(services_of(app), device=device)
            assert await status_of(here, device, key) == 401  # the deleting process: at once
            await eventually(lambda: answers(there, device, key, 401))

    async def test_recursive_folder_delete_stops_the_keys_inside(
        self, app: FastAPI, other_process: FastAPI, engine: AIOEngine
    ) -> None:
        alice = user_principal()
        folder = await new_folder(engine, owner=alice)
        product = await new_product(engine, owner=alice, folder=folder)
        device, key = await new_device(engine, owner=alice, product=product, folder=folder)
        async with client_for(other_process) as there:
            assert await status_of(there, device, key) == 200
            await folders_service.delete(services_of(app), folder=folder, recursive=True)
            await eventually(lambda: answers(there, device, key, 401))


class TestWithoutTheFeed:
    async def test_keys_are_checked_in_mongodb_while_redis_is_down(
        self,
        make_settings: Callable[..., Settings],
        app_with: Any,
        workdir: Path,
        mongo_db: MongoDatabase,
        engine: AIOEngine,
    ) -> None:
        redis: ManagedProcess = start_redis(workdir)
        try:
            settings = make_settings(
                redis_url=f"redis://127.0.0.1:{redis.port}/0", rate_limit_enabled=False
            )
            device, key = await a_device(engine)
            async with app_with(settings) as lonely, client_for(lonely) as http:
                cache: DeviceKeyCache = services_of(lonely).device_keys
                await eventually(lambda: cache.live)
                assert await status_of(http, device, key) == 200  # cached
                redis.stop()
                await eventually(lambda: not cache.live)
                # Nobody can announce this change now; the next request must see it anyway.
                await change_key_by_hand(mongo_db, device)
                assert await status_of(http, device, key) == 401
                redis = start_redis(workdir, port=redis.port)
                await eventually(lambda: cache.live, timeout=10)
        finally:
            redis.stop()

    async def test_a_change_made_by_hand_applies_within_the_cache_ttl(
        self, api_with_cache_ttl: ApiWithCacheTtl, mongo_db: MongoDatabase, engine: AIOEngine
    ) -> None:
        device, key = await a_device(engine)
        async with api_with_cache_ttl(0.5) as (app, http):
            await eventually(lambda: services_of(app).device_keys.live)
            assert await status_of(http, device, key) == 200
            await change_key_by_hand(mongo_db, device)
            await eventually(lambda: answers(http, device, key, 401), timeout=3)

    async def test_caching_off_checks_every_request(
        self, api_with_cache_ttl: ApiWithCacheTtl, mongo_db: MongoDatabase, engine: AIOEngine
    ) -> None:
        device, key = await a_device(engine)
        async with api_with_cache_ttl(0) as (_, http):
            assert await status_of(http, device, key) == 200
            await change_key_by_hand(mongo_db, device)
            assert await status_of(http, device, key) == 401


class TestCacheRules:
    def test_a_lookup_that_raced_a_revocation_is_not_kept(self) -> None:
        cache = DeviceKeyCache(ttl_s=60)
        cache.set_live(True)
        generation = cache.generation  # read before the database lookup
        cache.forget(["d1"])  # the key was rotated while the lookup ran
        cache.remember("hash", "d1", generation=generation)
        assert cache.lookup("hash") is None

    def test_nothing_is_served_or_kept_until_the_feed_is_live(self) -> None:
        cache = DeviceKeyCache(ttl_s=60)
        cache.remember("hash", "d1", generation=cache.generation)
        assert cache.lookup("hash") is None
        cache.set_live(True)
        cache.remember("hash", "d1", generation=cache.generation)
        assert cache.lookup("hash") == "d1"
        cache.set_live(False)
        assert cache.lookup("hash") is None

    def test_forget_drops_only_the_named_devices(self) -> None:
        cache = DeviceKeyCache(ttl_s=60)
        cache.set_live(True)
        for key_hash, device_id in (("h1", "d1"), ("h2", "d2")):
            cache.remember(key_hash, device_id, generation=cache.generation)
        cache.forget(["d1"])
        assert (cache.lookup("h1"), cache.lookup("h2")) == (None, "d2")
