"""Devices: derived status (and its query), keys, serials, metadata, presence left alone."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from odmantic import AIOEngine

from app.auth import device_keys
from app.auth.key_cache import DeviceKeyCache
from app.auth.principal import Principal
from app.catalog import presence as device_presence
from app.catalog.devices import service as devices_service
from app.catalog.devices.schemas import DeviceCreate, DeviceFilters, DeviceUpdate
from app.catalog.exceptions import MetadataTooLarge, ProductNotFound, SerialTaken
from app.catalog.models import Device, Product
from app.catalog.presence import DeviceStatus
from app.core import db
from app.core.models import utcnow
from app.core.pagination import PageParams
from app.core.services import Services, services_of
from tests.fixtures.catalog import new_device, new_product, unique, user_principal

OFFLINE_AFTER = 300


def presence(age_s: float | None, reported: str | None = "ok") -> dict[str, Any] | None:
    if age_s is None:
        return None
    return {
        "last_seen_at": utcnow() - timedelta(seconds=age_s),
        "reported_status": reported,
        "detail": {},
    }


CASES = [
    (None, "ok", DeviceStatus.OFFLINE),
    (10, "ok", DeviceStatus.ONLINE),
    (10, None, DeviceStatus.ONLINE),
    (10, "error", DeviceStatus.ERROR),
    (OFFLINE_AFTER + 60, "ok", DeviceStatus.OFFLINE),
    (OFFLINE_AFTER + 60, "error", DeviceStatus.OFFLINE),
]


@pytest.fixture
def services(app: FastAPI) -> Services:
    """The test app's clients, as the routes get them."""
    return services_of(app)


async def create(
    services: Services, principal: Principal, product: Product, **fields: Any
) -> Device:
    """Create a device through the service (its rules are what these tests check)."""
    values: dict[str, Any] = {"name": unique("d"), "serial": unique("SN"), **fields}
    device_in = DeviceCreate(product_id=str(product.id), **values)
    device, _ = await devices_service.create(services, principal=principal, device_in=device_in)
    return device


class TestStatus:
    @pytest.mark.parametrize(("age", "reported", "expected"), CASES)
    def test_derived_from_presence(
        self, age: float | None, reported: str | None, expected: DeviceStatus
    ) -> None:
        status = device_presence.derive_status(
            presence(age, reported), now=utcnow(), offline_after_s=OFFLINE_AFTER
        )
        assert status is expected

    async def test_list_filter_agrees_with_derivation(self, engine: AIOEngine) -> None:
        alice = user_principal()
        product = await new_product(engine, owner=alice)
        expected: dict[DeviceStatus, set[Any]] = {s: set() for s in DeviceStatus}
        for age, reported, status in CASES:
            device, _ = await new_device(engine, owner=alice, product=product)
            # Written the way readings writes it: the whole sub-document in one `$set`.
            await db.collection(engine, Device).update_one(
                {"_id": device.id}, {"$set": {"presence": presence(age, reported)}}
            )
            expected[status].add(device.id)
        for status, ids in expected.items():
            items, _ = await devices_service.list_(
                engine,
                principal=alice,
                page=PageParams(limit=50),
                offline_after_s=OFFLINE_AFTER,
                filters_in=DeviceFilters(status=status, product_id=str(product.id)),
            )
            assert {d.id for d in items} == ids, status


class TestKeys:
    async def test_stored_only_as_hash_and_prefix(self, engine: AIOEngine) -> None:
        alice = user_principal()
        device, key = await new_device(
            engine, owner=alice, product=await new_product(engine, owner=alice)
        )
        raw = await db.collection(engine, Device).find_one({"_id": device.id})
        assert raw is not None
        assert key not in str(raw)
        assert raw["key_hash"] == device_keys.hash_key(key)
        assert key.startswith(raw["key_prefix"])

    async def test_rotation_replaces_the_hash(
        self, engine: AIOEngine, key_cache: DeviceKeyCache
    ) -> None:
        alice = user_principal()
        device, old = await new_device(
            engine, owner=alice, product=await new_product(engine, owner=alice)
        )
        new = (await devices_service.rotate_key(engine, device=device, key_cache=key_cache)).key
        coll = db.collection(engine, Device)
        assert await coll.find_one({"key_hash": device_keys.hash_key(old)}) is None
        assert (await coll.find_one({"key_hash": device_keys.hash_key(new)}))["_id"] == device.id


class TestCreateAndUpdate:
    async def test_duplicate_serial_is_refused(self, engine: AIOEngine, services: Services) -> None:
        alice = user_principal()
        product = await new_product(engine, owner=alice)
        serial = unique("SN")
        await create(services, alice, product, serial=serial)
        with pytest.raises(SerialTaken):
            await create(services, alice, product, serial=serial)

    async def test_product_must_be_visible(self, engine: AIOEngine, services: Services) -> None:
        other = await new_product(engine, owner=user_principal())
        with pytest.raises(ProductNotFound):
            await create(services, user_principal(), other)

    async def test_oversized_metadata_is_refused(
        self, engine: AIOEngine, services: Services
    ) -> None:
        alice = user_principal()
        product = await new_product(engine, owner=alice)
        with pytest.raises(MetadataTooLarge):
            await create(services, alice, product, metadata={"x": "a" * 9000})

    async def test_update_leaves_presence_alone(
        self, engine: AIOEngine, services: Services
    ) -> None:
        alice = user_principal()
        device, _ = await new_device(
            engine, owner=alice, product=await new_product(engine, owner=alice)
        )
        seen = presence(5)
        await db.collection(engine, Device).update_one(
            {"_id": device.id}, {"$set": {"presence": seen}}
        )
        updated = await devices_service.update(
            services,
            principal=alice,
            device=device,
            device_in=DeviceUpdate(name="renamed", location={"lat": 1.5, "lon": 2.5}),
        )
        assert updated.name == "renamed"
        assert updated.location == {"lat": 1.5, "lon": 2.5}
        assert updated.presence == seen
        assert updated.updated_at >= device.updated_at
