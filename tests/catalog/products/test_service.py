"""Products: SKU unique per owner, filters, in-use deletes."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from odmantic import AIOEngine

from app.auth.principal import Principal
from app.catalog import crud
from app.catalog.exceptions import ProductInUse, SkuTaken
from app.catalog.models import Product
from app.catalog.products import service as products_service
from app.catalog.products.schemas import ProductCreate, ProductFilters, ProductUpdate
from app.catalog.telemetry import TelemetrySchema
from app.core.pagination import PageParams
from app.core.services import Services, services_of
from tests.fixtures.catalog import new_device, new_folder, new_product, unique, user_principal

PAGE = PageParams(limit=100)


@pytest.fixture
def services(app: FastAPI) -> Services:
    """The test app's clients, as the routes get them."""
    return services_of(app)


async def create(services: Services, principal: Principal, *, sku: str) -> Product:
    """Create a product through the service (its rules are what these tests check)."""
    product_in = ProductCreate(name=unique("p"), sku=sku)
    return await products_service.create(services, principal=principal, product_in=product_in)


class TestSku:
    async def test_unique_per_owner_only(self, engine: AIOEngine, services: Services) -> None:
        alice, bob = user_principal(), user_principal()
        sku = unique("SKU")
        await create(services, alice, sku=sku)
        with pytest.raises(SkuTaken):
            await create(services, alice, sku=sku.lower())
        await create(services, bob, sku=sku)

    async def test_update_to_a_taken_sku_changes_nothing(
        self, engine: AIOEngine, services: Services
    ) -> None:
        alice = user_principal()
        first = await new_product(engine, owner=alice)
        second = await new_product(engine, owner=alice)
        with pytest.raises(SkuTaken):
            await products_service.update(
                services,
                principal=alice,
                product=second,
                product_in=ProductUpdate(sku=first.sku, name="renamed"),
            )
        stored = await crud.get(engine, Product, str(second.id))
        assert (stored.sku, stored.name) == (second.sku, second.name)


class TestList:
    async def test_filters_by_folder_tag_and_prefix(self, engine: AIOEngine) -> None:
        alice = user_principal()
        folder = await new_folder(engine, owner=alice)
        thermo = await new_product(
            engine, owner=alice, folder=folder, name="Thermo X", tags=["climate"]
        )
        await new_product(engine, owner=alice, folder=folder, name="Door", sku="DR-1")
        await new_product(engine, owner=alice, name="Thermo Y")
        fid = str(folder.id)

        async def names(**filters: str) -> set[str]:
            items, _ = await products_service.list_(
                engine, principal=alice, page=PAGE, filters_in=ProductFilters(**filters)
            )
            return {p.name for p in items}

        assert await names(folder_id=fid) == {"Thermo X", "Door"}
        assert await names(tag="climate") == {"Thermo X"}
        assert await names(q="thermo") == {"Thermo X", "Thermo Y"}
        assert await names(q="dr-", folder_id=fid) == {"Door"}
        assert await names(q="the.*") == set()  # regex characters are literal
        assert thermo.telemetry == TelemetrySchema().model_dump(mode="json")

    async def test_strangers_see_nothing(self, engine: AIOEngine) -> None:
        await new_product(engine, owner=user_principal())
        items, _ = await products_service.list_(
            engine, principal=user_principal(), page=PAGE, filters_in=ProductFilters()
        )
        assert items == []


class TestDelete:
    async def test_refused_while_devices_use_it(
        self, engine: AIOEngine, services: Services
    ) -> None:
        alice = user_principal()
        product = await new_product(engine, owner=alice)
        await new_device(engine, owner=alice, product=product)
        with pytest.raises(ProductInUse):
            await products_service.delete(services, product=product)
        assert await crud.get(engine, Product, str(product.id))
