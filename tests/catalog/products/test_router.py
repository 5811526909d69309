"""Products over HTTP: bad input, duplicates, in-use deletes, all changing nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.core.db import MongoDatabase
from app.core.services import services_of
from tests.fixtures.catalog import new_device, new_product, unique
from tests.fixtures.catalog_http import API, principal_of, signed_in
from tests.fixtures.identities import MakeUser

BAD: list[tuple[str, dict[str, Any]]] = [
    ("empty name", {"name": ""}),
    ("long name", {"name": "p" * 101}),
    ("empty sku", {"sku": ""}),
    ("sku with spaces", {"sku": "A B"}),
    ("malformed folder", {"folder_id": "f"}),
    ("metric min above max", {"telemetry": {"metrics": [{"name": "t", "min": 5, "max": 1}]}}),
    ("duplicate metric", {"telemetry": {"metrics": [{"name": "t"}, {"name": "t"}]}}),
    ("too many tags", {"tags": [f"t{i}" for i in range(21)]}),
]


class TestBadInput:
    @pytest.mark.parametrize(("case", "patch"), BAD, ids=[c for c, _ in BAD])
    async def test_create_422_and_nothing_stored(
        self,
        case: str,
        patch: dict[str, Any],
        client: httpx.AsyncClient,
        make_user: MakeUser,
        mongo_db: MongoDatabase,
    ) -> None:
        alice = await signed_in(make_user, client)
        body = {"name": unique("p"), "sku": unique("SKU"), **patch}
        resp = await client.post(f"{API}/products", json=body, headers=alice.headers)
        assert resp.status_code == 422, resp.text
        assert await mongo_db.products.count_documents({"created_by": alice.uid}) == 0

    async def test_update_to_taken_sku_409_and_unchanged(
        self, app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        alice = await signed_in(make_user, client)
        engine, owner = services_of(app).engine, principal_of(alice)
        first = await new_product(engine, owner=owner)
        second = await new_product(engine, owner=owner)
        url = f"{API}/products/{second.id}"
        before = (await client.get(url, headers=alice.headers)).json()
        resp = await client.patch(url, json={"sku": first.sku, "name": "x"}, headers=alice.headers)
        assert resp.status_code == 409
        assert (await client.get(url, headers=alice.headers)).json() == before

    async def test_delete_in_use_409(
        self, app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        alice = await signed_in(make_user, client)
        engine, owner = services_of(app).engine, principal_of(alice)
        product = await new_product(engine, owner=owner)
        await new_device(engine, owner=owner, product=product)
        url = f"{API}/products/{product.id}"
        assert (await client.delete(url, headers=alice.headers)).status_code == 409
        assert (await client.get(url, headers=alice.headers)).status_code == 200

    async def test_telemetry_schema_round_trips(
        self, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        alice = await signed_in(make_user, client)
        telemetry = {
            "metrics": [
                {"name": "temp", "unit": "°C", "min": -40, "max": 85, "description": "air"}
            ],
            "allow_unknown": False,
        }
        body = {"name": "Thermo", "sku": unique("T"), "telemetry": telemetry}
        resp = await client.post(f"{API}/products", json=body, headers=alice.headers)
        assert resp.status_code == 201, resp.text
        metric = resp.json()["telemetry"]["metrics"][0]
        assert (metric["unit"], metric["min"], metric["max"]) == ("°C", -40, 85)


class TestCreationQuota:
    async def test_one_product_per_window_for_users_not_admins(
        self, client: httpx.AsyncClient, make_user: MakeUser, mongo_db: MongoDatabase
    ) -> None:
        alice = await signed_in(make_user, client)
        bad = await client.post(f"{API}/products", json={"name": ""}, headers=alice.headers)
        assert bad.status_code == 422  # a rejected body does not spend the quota

        def body() -> dict[str, Any]:
            return {"name": unique("p"), "sku": unique("SKU")}

        first = await client.post(f"{API}/products", json=body(), headers=alice.headers)
        assert first.status_code == 201, first.text
        second = await client.post(f"{API}/products", json=body(), headers=alice.headers)
        assert second.status_code == 429
        assert int(second.headers["Retry-After"]) > 0
        assert await mongo_db.products.count_documents({"created_by": alice.uid}) == 1

        admin = await signed_in(make_user, client, admin=True)
        for _ in range(2):
            resp = await client.post(f"{API}/products", json=body(), headers=admin.headers)
            assert resp.status_code == 201, resp.text
