"""The maintained per-scope device counters stay right through the catalog and presence.

Changes go through the HTTP API (which calls the counters' hook); the statistics are read
from the counters (a recount has built them) and compared with the indexed queries.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from bson import ObjectId
from fastapi import FastAPI
from pymongo import MongoClient
from redis import Redis

from app.catalog.models import Product
from app.core.config import Settings
from app.core.db import MongoDatabase
from app.core.services import services_of
from app.stats import devices
from app.stats import service as stats_service
from tests.fixtures.catalog import new_product, unique
from tests.fixtures.catalog_http import API, api_folder, post_ok, principal_of, signed_in
from tests.fixtures.identities import MakeUser, TestUser
from tests.fixtures.worker import eventually


@pytest.fixture
def sync_clients(settings: Settings) -> Iterator[tuple[Any, Redis]]:
    """The pymongo database and Redis the worker's recount uses."""
    mongo: MongoClient[dict[str, Any]] = MongoClient(settings.mongodb_url, tz_aware=True)
    redis = Redis.from_url(settings.redis_url)
    yield mongo[settings.mongodb_db], redis
    redis.close()
    mongo.close()


@pytest.fixture
async def built(app: FastAPI, sync_clients: tuple[Any, Redis]) -> AsyncIterator[None]:
    """Counters built by a recount (as the beat does); afterwards, not built again, so
    other tests see the query path they expect."""
    await asyncio.to_thread(devices.recount, *sync_clients)
    yield
    await services_of(app).redis.delete(devices.BUILT)


async def _stats(
    app: FastAPI, user: TestUser, *, counted: bool = True, offline_after_s: int = 300, **f: str
) -> dict[str, Any]:
    services = services_of(app)
    if counted:
        assert await services.device_counters.built()
    result = await stats_service.fleet(
        services.engine,
        services.redis,
        principal=principal_of(user),
        folder_id=f.get("folder_id"),
        product_id=f.get("product_id"),
        offline_after_s=offline_after_s,
        alarm_counter=stats_service.no_alarms,
        device_counters=services.device_counters if counted else None,
    )
    data = result.model_dump(mode="json")
    by_product = {p["product_id"]: p["devices"] for p in data["devices_by_product"]}
    return {"status": data["devices_by_status"], "products": by_product, "raw": data}


def _status(online: int = 0, offline: int = 0, error: int = 0) -> dict[str, int]:
    return {"online": online, "offline": offline, "error": error}


async def _same_both_ways(app: FastAPI, user: TestUser, **f: str) -> dict[str, Any]:
    """The counters' answer, checked against the indexed queries'."""
    counted = await _stats(app, user, **f)
    queried = await _stats(app, user, counted=False, **f)
    assert counted["status"] == queried["status"], f
    assert counted["products"] == queried["products"], f
    return counted


async def _device(
    client: httpx.AsyncClient, user: TestUser, product: Product, folder: str
) -> dict[str, Any]:
    body = {
        "name": unique("d"),
        "serial": unique("SN"),
        "product_id": str(product.id),
        "folder_id": folder,
    }
    return await post_ok(client, "/devices", body, user)


@pytest.mark.usefixtures("built")
class TestCatalogChanges:
    async def test_create_move_and_delete(
        self, app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        alice = await signed_in(make_user, client)
        engine = services_of(app).engine
        a, b = (await api_folder(client, alice))["id"], (await api_folder(client, alice))["id"]
        p1 = await new_product(engine, owner=principal_of(alice))
        p2 = await new_product(engine, owner=principal_of(alice))
        d1 = await _device(client, alice, p1, a)
        d2 = await _device(client, alice, p2, a)
        got = await _same_both_ways(app, alice, folder_id=a)
        assert got["status"] == _status(offline=2)
        assert got["products"] == {str(p1.id): 1, str(p2.id): 1}
        assert (await _same_both_ways(app, alice))["status"] == _status(offline=2)

        # A device moves to B.
        resp = await client.patch(
            f"{API}/devices/{d1['id']}", json={"folder_id": b}, headers=alice.headers
        )
        assert resp.status_code == 200, resp.text
        assert (await _same_both_ways(app, alice, folder_id=a))["products"] == {str(p2.id): 1}
        assert (await _same_both_ways(app, alice, folder_id=b))["products"] == {str(p1.id): 1}

        # Folder B moves under A: A's subtree counts both again.
        resp = await client.patch(
            f"{API}/folders/{b}", json={"parent_id": a}, headers=alice.headers
        )
        assert resp.status_code == 200, resp.text
        got = await _same_both_ways(app, alice, folder_id=a)
        assert got["products"] == {str(p1.id): 1, str(p2.id): 1}
        assert (await _same_both_ways(app, alice, folder_id=a, product_id=str(p1.id)))[
            "status"
        ] == _status(offline=1)

        # Deleting a device, then the folder with what is below it.
        resp = await client.delete(f"{API}/devices/{d2['id']}", headers=alice.headers)
        assert resp.status_code == 204, resp.text
        assert (await _same_both_ways(app, alice, folder_id=a))["products"] == {str(p1.id): 1}
        resp = await client.delete(
            f"{API}/folders/{b}", params={"recursive": "true"}, headers=alice.headers
        )
        assert resp.status_code == 204, resp.text
        got = await _same_both_ways(app, alice, folder_id=a)
        assert got["status"] == _status()
        assert got["products"] == {}
        assert (await _same_both_ways(app, alice))["status"] == _status()


@pytest.mark.usefixtures("built")
class TestPresenceTransitions:
    async def test_online_error_online_then_offline_by_time(
        self, app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        alice = await signed_in(make_user, client)
        engine = services_of(app).engine
        folder = (await api_folder(client, alice))["id"]
        product = await new_product(engine, owner=principal_of(alice))
        created = await _device(client, alice, product, folder)
        key = {"X-Device-Key": created["key"]}
        device_url = f"{API}/devices/{created['id']}"
        assert (await _same_both_ways(app, alice, folder_id=folder))["status"] == _status(offline=1)

        resp = await client.post(f"{device_url}/readings", json={"metrics": {"t": 1}}, headers=key)
        assert resp.status_code == 202, resp.text

        async def status_is(expected: dict[str, int]) -> bool:
            got = await _stats(app, alice, folder_id=folder)
            return bool(got["status"] == expected)

        await eventually(lambda: status_is(_status(online=1)), timeout=5, what="online")
        assert (await _stats(app, alice, folder_id=folder))["raw"]["last_seen_at"] is not None

        resp = await client.post(f"{device_url}/heartbeat", json={"status": "error"}, headers=key)
        assert resp.status_code == 200, resp.text
        assert (await _same_both_ways(app, alice, folder_id=folder))["status"] == _status(error=1)
        resp = await client.post(f"{device_url}/heartbeat", json={"status": "ok"}, headers=key)
        assert resp.status_code == 200, resp.text
        assert (await _same_both_ways(app, alice, folder_id=folder))["status"] == _status(online=1)

        # Silence: offline once DEVICE_OFFLINE_AFTER_S has passed, with no write at all.
        async def offline_by_time() -> bool:
            got = await _stats(app, alice, folder_id=folder, offline_after_s=1)
            return bool(got["status"] == _status(offline=1))

        await eventually(offline_by_time, timeout=5, what="offline after 1 s")


class TestRecount:
    async def test_repairs_lost_and_stale_counters_and_builds_them(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        make_user: MakeUser,
        mongo_db: MongoDatabase,
        sync_clients: tuple[Any, Redis],
        built: None,
    ) -> None:
        alice = await signed_in(make_user, client)
        services = services_of(app)
        folder = (await api_folder(client, alice))["id"]
        product = await new_product(services.engine, owner=principal_of(alice))
        kept = await _device(client, alice, product, folder)
        gone = await _device(client, alice, product, folder)
        # Writes that bypass the API: one device deleted, the other's status changed.
        await mongo_db.devices.delete_one({"_id": ObjectId(gone["id"])})
        await services.redis.delete(f"{devices.PREFIX}in:{kept['id']}")
        await services.redis.zrem(f"{devices.PREFIX}seen:f:{folder}", kept["id"])
        wrong = await _stats(app, alice, folder_id=folder)
        assert wrong["status"] == _status(offline=1)  # `gone` still counted, `kept` lost
        # Without a recount's mark, the statistics query instead.
        await services.redis.delete(devices.BUILT)
        assert not await services.device_counters.built()
        queried = await _stats(app, alice, counted=False, folder_id=folder)
        assert queried["status"] == _status(offline=1)
        counts = await asyncio.to_thread(devices.recount, *sync_clients)
        assert counts["removed"] >= 1
        repaired = await _same_both_ways(app, alice, folder_id=folder)
        assert repaired["status"] == _status(offline=1)
        assert repaired["products"] == {str(product.id): 1}
        # Twice changes nothing.
        await asyncio.to_thread(devices.recount, *sync_clients)
        assert (await _same_both_ways(app, alice, folder_id=folder))["status"] == _status(offline=1)


class _ListedFirst:
    """The worker's database, except that right after a recount has listed the devices,
    `meanwhile` runs (the API creating and deleting devices while the recount reads)."""

    def __init__(self, database: Any, meanwhile: Callable[[], None]) -> None:
        self.database = database
        self.meanwhile = meanwhile

    def __getitem__(self, name: str) -> Any:
        collection = self.database[name]
        if name != "devices":
            return collection
        outer = self

        class Devices:
            def find(self, query: dict[str, Any], projection: dict[str, Any]) -> Any:
                if query:
                    return collection.find(query, projection)
                listed = list(collection.find(query, projection))
                outer.meanwhile()
                return iter(listed)

        return Devices()


class TestRecountWhileTheApiWrites:
    async def test_devices_created_and_deleted_meanwhile_are_counted_as_they_are(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        make_user: MakeUser,
        sync_clients: tuple[Any, Redis],
        built: None,
    ) -> None:
        alice = await signed_in(make_user, client)
        folder = (await api_folder(client, alice))["id"]
        engine = services_of(app).engine
        old, new = [await new_product(engine, owner=principal_of(alice)) for _ in range(2)]
        doomed = await _device(client, alice, old, folder)
        loop = asyncio.get_running_loop()

        async def api_writes() -> None:  # each synced by the API as it happens
            await _device(client, alice, new, folder)
            resp = await client.delete(f"{API}/devices/{doomed['id']}", headers=alice.headers)
            assert resp.status_code == 204, resp.text

        def meanwhile() -> None:
            asyncio.run_coroutine_threadsafe(api_writes(), loop).result(timeout=30)

        database, redis = sync_clients
        await asyncio.to_thread(devices.recount, _ListedFirst(database, meanwhile), redis)
        # One device: the new one, which the recount never listed; not the deleted one, which
        # it listed and wrote back after the API had taken it out.
        counted = await _same_both_ways(app, alice, folder_id=folder)
        assert counted["status"] == _status(offline=1)
        assert counted["products"] == {str(new.id): 1}
