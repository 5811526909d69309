"""Devices over HTTP: the key shown once and used, rotation, status, bad input, 10k paging."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from bson import ObjectId
from fastapi import FastAPI

from app.auth import device_keys
from app.catalog.models import Device
from app.core import db
from app.core.db import MongoDatabase
from app.core.models import utcnow
from app.core.services import services_of
from tests.fixtures.catalog import grant, new_folder, new_product, unique
from tests.fixtures.catalog_http import API, post_ok, principal_of, signed_in
from tests.fixtures.identities import MakeUser, TestUser


async def _product(client: httpx.AsyncClient, user: TestUser, app: FastAPI) -> str:
    product = await new_product(services_of(app).engine, owner=principal_of(user))
    return str(product.id)


def _device_body(product_id: str, **extra: Any) -> dict[str, Any]:
    return {"name": unique("d"), "serial": unique("SN"), "product_id": product_id, **extra}


class TestKeys:
    async def test_key_shown_once_and_authenticates_the_device(
        self, app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        alice = await signed_in(make_user, client)
        created = await post_ok(
            client, "/devices", _device_body(await _product(client, alice, app)), alice
        )
        key = created["key"]
        assert key.startswith("dk_")
        assert key.startswith(created["key_prefix"])
        url = f"{API}/devices/{created['id']}"
        again = await client.get(url, headers=alice.headers)
        assert "key" not in again.json()
        assert "key_hash" not in again.json()
        as_device = await client.get(url, headers={"X-Device-Key": key})
        assert as_device.status_code == 200
        assert as_device.json()["id"] == created["id"]

    async def test_rotation_stops_the_old_key_at_once(
        self, app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        alice = await signed_in(make_user, client)
        created = await post_ok(
            client, "/devices", _device_body(await _product(client, alice, app)), alice
        )
        url = f"{API}/devices/{created['id']}"
        rotated = await client.post(f"{url}/keys", headers=alice.headers)
        assert rotated.status_code == 201, rotated.text
        new_key = rotated.json()["key"]
        assert new_key != created["key"]
        assert (await client.get(url, headers={"X-Device-Key": created["key"]})).status_code == 401
        assert (await client.get(url, headers={"X-Device-Key": new_key})).status_code == 200


class TestStatus:
    async def test_status_follows_presence(
        self, app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser, mongo_db: MongoDatabase
    ) -> None:
        alice = await signed_in(make_user, client)
        created = await post_ok(
            client, "/devices", _device_body(await _product(client, alice, app)), alice
        )
        url = f"{API}/devices/{created['id']}/status"
        assert (await client.get(url, headers=alice.headers)).json()["status"] == "offline"
        presence = {"last_seen_at": utcnow(), "reported_status": "error", "detail": {"code": 7}}
        await mongo_db.devices.update_one(
            {"_id": ObjectId(created["id"])}, {"$set": {"presence": presence}}
        )
        body = (await client.get(url, headers=alice.headers)).json()
        assert (body["status"], body["detail"]) == ("error", {"code": 7})
        listed = await client.get(f"{API}/devices?status=error", headers=alice.headers)
        assert [d["id"] for d in listed.json()["items"]] == [created["id"]]


BAD_BODIES: list[tuple[str, dict[str, Any]]] = [
    ("lat too big", {"location": {"lat": 90.5, "lon": 0}}),
    ("lon too small", {"location": {"lat": 0, "lon": -180.01}}),
    ("lat missing", {"location": {"lon": 0}}),
    ("empty name", {"name": ""}),
    ("long name", {"name": "n" * 101}),
    ("empty serial", {"serial": ""}),
    ("serial with spaces", {"serial": "a b"}),
    ("malformed product", {"product_id": "123"}),
    ("dollar metadata key", {"metadata": {"$where": 1}}),
    ("dotted metadata key", {"metadata": {"a.b": 1}}),
    ("oversized metadata", {"metadata": {"blob": "x" * 9000}}),
]


class TestBadInput:
    @pytest.mark.parametrize(("case", "patch"), BAD_BODIES, ids=[c for c, _ in BAD_BODIES])
    async def test_create_422_and_nothing_stored(
        self,
        case: str,
        patch: dict[str, Any],
        app: FastAPI,
        client: httpx.AsyncClient,
        make_user: MakeUser,
        mongo_db: MongoDatabase,
    ) -> None:
        alice = await signed_in(make_user, client)
        body = {**_device_body(await _product(client, alice, app)), **patch}
        resp = await client.post(f"{API}/devices", json=body, headers=alice.headers)
        assert resp.status_code == 422, resp.text
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert await mongo_db.devices.count_documents({"created_by": alice.uid}) == 0

    async def test_non_finite_location_is_422(
        self, app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        alice = await signed_in(make_user, client)
        product_id = await _product(client, alice, app)
        raw = (
            f'{{"name": "n", "serial": "{unique("SN")}", "product_id": "{product_id}", '
            '"location": {"lat": NaN, "lon": 1}}'
        )
        resp = await client.post(
            f"{API}/devices",
            content=raw,
            headers={**alice.headers, "Content-Type": "application/json"},
        )
        assert resp.status_code == 422

    async def test_duplicate_serial_409_and_invisible_product_404(
        self, app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser, mongo_db: MongoDatabase
    ) -> None:
        alice, eve = await signed_in(make_user, client), await signed_in(make_user, client)
        product = await _product(client, alice, app)
        body = _device_body(product)
        await post_ok(client, "/devices", body, alice)
        dup = await client.post(
            f"{API}/devices", json={**body, "name": "other"}, headers=alice.headers
        )
        assert dup.status_code == 409
        assert dup.json()["type"] == "/problems/serial-taken"
        stolen = await client.post(
            f"{API}/devices", json=_device_body(product), headers=eve.headers
        )
        assert stolen.status_code == 404
        assert await mongo_db.devices.count_documents({"serial": body["serial"]}) == 1
        assert await mongo_db.devices.count_documents({"created_by": eve.uid}) == 0

    async def test_rejected_update_changes_nothing(
        self, app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        alice = await signed_in(make_user, client)
        product = await _product(client, alice, app)
        other = await post_ok(client, "/devices", _device_body(product), alice)
        mine = await post_ok(client, "/devices", _device_body(product), alice)
        url = f"{API}/devices/{mine['id']}"
        before = (await client.get(url, headers=alice.headers)).json()
        for body, code in (
            ({"serial": other["serial"], "name": "renamed"}, 409),
            ({"location": {"lat": 91, "lon": 0}}, 422),
            ({"metadata": {"blob": "y" * 9000}, "name": "renamed"}, 422),
            ({"name": None}, 422),
            ({"product_id": str(ObjectId())}, 404),
        ):
            resp = await client.patch(url, json=body, headers=alice.headers)
            assert resp.status_code == code, (body, resp.text)
        assert (await client.get(url, headers=alice.headers)).json() == before

    @pytest.mark.parametrize(
        ("device_id", "code"), [("x", 422), ("0" * 24, 404), ("z" * 24, 422), ("A" * 24, 422)]
    )
    async def test_unknown_ids_are_404_malformed_422(
        self, device_id: str, code: int, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        # The document says an id is 24 lowercase hex characters: anything else is refused.
        alice = await signed_in(make_user, client)
        for method, path in (("GET", ""), ("GET", "/status"), ("POST", "/keys"), ("DELETE", "")):
            resp = await client.request(
                method, f"{API}/devices/{device_id}{path}", headers=alice.headers
            )
            assert resp.status_code == code, resp.text


@pytest.mark.slow
class TestTenThousandThroughFolderGrants:
    """Large-data paging (`make test-all`); its speed is measured by scripts/bench_*."""

    async def test_pages_cover_every_visible_device_once(
        self, app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        engine = services_of(app).engine
        viewer = await signed_in(make_user, client)
        owner = await signed_in(make_user, client)
        site = await new_folder(engine, owner=principal_of(owner))
        unit = await new_folder(engine, owner=principal_of(owner), parent=site)
        hidden_folder = await new_folder(engine, owner=principal_of(owner))
        product = await new_product(engine, owner=principal_of(owner))
        await grant(engine, principal=principal_of(viewer), resource=site, role="viewer")

        def doc(folder_path: list[str], n: int) -> dict[str, Any]:
            key = device_keys.generate()
            return Device(
                name=f"bulk {n}",
                name_key=f"bulk {n}",
                serial=f"bulk-{ObjectId()}",
                product_id=str(product.id),
                folder_id=folder_path[-1],
                folder_path=folder_path,
                key_hash=key.key_hash,
                key_prefix=key.key_prefix,
                created_by=owner.uid,
            ).model_dump_doc()

        visible_path, hidden_path = unit.path, hidden_folder.path
        coll = db.collection(engine, Device)
        for start in range(0, 10_000, 2_000):
            batch = [doc(visible_path, n) for n in range(start, start + 2_000)]
            batch += [doc(hidden_path, n) for n in range(start, start + 20)]  # interleaved
            await coll.insert_many(batch)

        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            params = {"limit": "1000", **({"cursor": cursor} if cursor else {})}
            resp = await client.get(f"{API}/devices", params=params, headers=viewer.headers)
            assert resp.status_code == 200, resp.text
            body = resp.json()
            seen += [d["id"] for d in body["items"]]
            pages += 1
            cursor = body["next_cursor"]
            if cursor is None:
                break
            assert pages <= 11
        assert len(seen) == 10_000
        assert len(set(seen)) == 10_000
        assert seen == sorted(seen)  # ordered by _id
        assert pages == 10
