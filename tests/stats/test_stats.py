"""Fleet statistics: only what the caller sees, status and product counts, ingest rate."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from bson import ObjectId
from fastapi import FastAPI

from app.catalog.models import Device, Folder, Product
from app.catalog.presence import document
from app.core.db import MongoDatabase
from app.core.models import utcnow
from app.core.services import services_of
from app.stats import service as stats_service
from tests.fixtures.catalog import grant, new_device, new_folder, new_product, user_principal
from tests.fixtures.catalog_http import API, principal_of, signed_in
from tests.fixtures.identities import MakeUser, TestUser


async def _stats(client: httpx.AsyncClient, user: TestUser, **params: str) -> dict[str, Any]:
    resp = await client.get(f"{API}/stats", params=params, headers=user.headers)
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    return data


async def _seen(
    mongo_db: MongoDatabase, device: Device, *, ago_s: float, status: str | None
) -> None:
    presence = {
        **document(now=utcnow() - timedelta(seconds=ago_s), reported_status=status, detail={}),
    }
    await mongo_db.devices.update_one({"_id": device.id}, {"$set": {"presence": presence}})


class Fleet:
    """Alice's folder tree with four devices, and Bob's device shared with Alice directly."""

    def __init__(self) -> None:
        self.root: Folder
        self.child: Folder
        self.product: Product
        self.other_product: Product
        self.devices: list[Device] = []
        self.shared: Device
        self.hidden: Device


@pytest.fixture
async def fleet(app: FastAPI, mongo_db: MongoDatabase) -> Fleet:
    engine = services_of(app).engine
    alice, bob = user_principal(), user_principal()
    f = Fleet()
    f.root = await new_folder(engine, owner=alice)
    f.child = await new_folder(engine, owner=alice, parent=f.root)
    f.product = await new_product(engine, owner=alice, folder=f.root)
    f.other_product = await new_product(engine, owner=alice, folder=f.root)
    online, _ = await new_device(engine, owner=alice, product=f.product, folder=f.root)
    error, _ = await new_device(engine, owner=alice, product=f.product, folder=f.child)
    stale, _ = await new_device(engine, owner=alice, product=f.other_product, folder=f.child)
    never, _ = await new_device(engine, owner=alice, product=f.product, folder=f.child)
    f.devices = [online, error, stale, never]
    await _seen(mongo_db, online, ago_s=5, status="ok")
    await _seen(mongo_db, error, ago_s=1, status="error")
    await _seen(mongo_db, stale, ago_s=10_000, status="ok")
    bob_folder = await new_folder(engine, owner=bob)
    bob_product = await new_product(engine, owner=bob, folder=bob_folder)
    f.shared, _ = await new_device(engine, owner=bob, product=bob_product, folder=bob_folder)
    f.hidden, _ = await new_device(engine, owner=bob, product=bob_product, folder=bob_folder)
    await _seen(mongo_db, f.shared, ago_s=0, status=None)
    await _seen(mongo_db, f.hidden, ago_s=0, status="error")
    f.alice, f.bob = alice, bob  # type: ignore[attr-defined]
    return f


async def _as(app: FastAPI, principal: Any, **filters: str | None) -> dict[str, Any]:
    services = services_of(app)
    result = await stats_service.fleet(
        services.engine,
        services.redis,
        principal=principal,
        folder_id=filters.get("folder_id"),
        product_id=filters.get("product_id"),
        offline_after_s=services.settings.device_offline_after_s,
        alarm_counter=stats_service.no_alarms,
    )
    return result.model_dump(mode="json")


class TestDeviceCounts:
    async def test_counts_what_the_caller_sees(self, app: FastAPI, fleet: Fleet) -> None:
        engine = services_of(app).engine
        alice = fleet.alice  # type: ignore[attr-defined]
        await grant(engine, principal=alice, resource=fleet.shared, role="viewer")
        # Alice owns both the root and its child (grants on each): no device counted twice.
        stats = await _as(app, alice)
        assert stats["devices_total"] == 5
        assert stats["devices_by_status"] == {"online": 2, "offline": 2, "error": 1}
        by_product = {p["product_id"]: p["devices"] for p in stats["devices_by_product"]}
        assert by_product == {
            str(fleet.product.id): 3,
            str(fleet.other_product.id): 1,
            fleet.shared.product_id: 1,
        }
        assert stats["last_seen_at"] is not None

    async def test_nothing_of_others(self, app: FastAPI, fleet: Fleet) -> None:
        stats = await _as(app, user_principal())
        assert stats["devices_total"] == 0
        assert stats["devices_by_status"] == {"online": 0, "offline": 0, "error": 0}
        assert stats["devices_by_product"] == []
        assert stats["last_seen_at"] is None

    async def test_folder_and_product_filters(self, app: FastAPI, fleet: Fleet) -> None:
        alice = fleet.alice  # type: ignore[attr-defined]
        child = await _as(app, alice, folder_id=str(fleet.child.id))
        assert child["devices_by_status"] == {"online": 0, "offline": 2, "error": 1}
        product = await _as(app, alice, product_id=str(fleet.product.id))
        assert product["devices_by_status"] == {"online": 1, "offline": 1, "error": 1}
        both = await _as(
            app, alice, folder_id=str(fleet.child.id), product_id=str(fleet.other_product.id)
        )
        assert both["devices_by_status"] == {"online": 0, "offline": 1, "error": 0}

    async def test_admin_sees_everything(self, app: FastAPI, fleet: Fleet) -> None:
        stats = await _as(app, user_principal(admin=True), product_id=fleet.shared.product_id)
        assert stats["devices_by_status"] == {"online": 1, "offline": 0, "error": 1}


class TestHttp:
    async def test_hidden_folder_is_404_and_alarms_are_zero(
        self, app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser, fleet: Fleet
    ) -> None:
        carol = await signed_in(make_user, client)
        resp = await client.get(
            f"{API}/stats", params={"folder_id": str(fleet.root.id)}, headers=carol.headers
        )
        assert resp.status_code == 404
        assert resp.headers["content-type"].startswith("application/problem+json")
        stats = await _stats(client, carol)
        assert stats["active_alarms_by_severity"] == dict.fromkeys(stats_service.SEVERITIES, 0)
        assert len(stats["readings_per_minute"]) == 60

    async def test_bad_id_is_422(self, client: httpx.AsyncClient, make_user: MakeUser) -> None:
        carol = await signed_in(make_user, client)
        resp = await client.get(f"{API}/stats?folder_id=nope", headers=carol.headers)
        assert resp.status_code == 422


class TestReadingsPerMinute:
    async def test_counted_after_ingest_for_those_who_see_the_device(
        self, app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        engine = services_of(app).engine
        alice, dave = await signed_in(make_user, client), await signed_in(make_user, client)
        owner = principal_of(alice)
        folder = await new_folder(engine, owner=owner)
        sub = await new_folder(engine, owner=owner, parent=folder)
        product = await new_product(engine, owner=owner, folder=folder)
        device, key = await new_device(engine, owner=owner, product=product, folder=sub)
        batch = {"readings": [{"metrics": {"temperature": t}} for t in range(7)]}
        resp = await client.post(
            f"{API}/devices/{device.id}/readings", json=batch, headers={"X-Device-Key": key}
        )
        assert resp.status_code in (200, 201, 202), resp.text

        def total(stats: dict[str, Any]) -> int:
            return sum(m["readings"] for m in stats["readings_per_minute"])

        deadline = time.monotonic() + 5
        while total(stats := await _stats(client, alice)) < 7 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert total(stats) == 7
        assert total(await _stats(client, alice, folder_id=str(sub.id))) == 7
        assert total(await _stats(client, alice, product_id=str(product.id))) == 7
        other = str(ObjectId())
        assert total(await _stats(client, alice, product_id=other)) == 0
        assert total(await _stats(client, dave)) == 0


class TestAlarmsArePluggable:
    async def test_counter_result_reported(self, app: FastAPI) -> None:
        services = services_of(app)

        async def two_critical(engine: Any, **_: Any) -> dict[str, int]:
            return {"critical": 2}

        result = await stats_service.fleet(
            services.engine,
            services.redis,
            principal=user_principal(),
            folder_id=None,
            product_id=None,
            offline_after_s=300,
            alarm_counter=two_critical,
        )
        assert result.active_alarms_by_severity["critical"] == 2
        assert result.active_alarms_by_severity["info"] == 0


class TestCountsCache:
    async def test_reused_within_cache_s_and_fresh_without(self, app: FastAPI) -> None:
        services = services_of(app)
        engine = services.engine
        owner = user_principal()
        folder = await new_folder(engine, owner=owner)
        product = await new_product(engine, owner=owner, folder=folder)
        await new_device(engine, owner=owner, product=product, folder=folder)

        async def total(cache_s: float) -> int:
            result = await stats_service.fleet(
                engine,
                services.redis,
                principal=owner,
                folder_id=None,
                product_id=None,
                offline_after_s=300,
                alarm_counter=stats_service.no_alarms,
                cache_s=cache_s,
            )
            return result.devices_total

        assert await total(60) == 1
        await new_device(engine, owner=owner, product=product, folder=folder)
        assert await total(60) == 1  # the cached counts
        assert await total(0) == 2
