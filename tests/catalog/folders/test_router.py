"""Folders over HTTP: inheritance, moves, conflicts and bad input that changes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.core.db import MongoDatabase
from app.core.services import services_of
from tests.fixtures.catalog import new_device, new_folder, new_product
from tests.fixtures.catalog_http import API, api_folder, principal_of, signed_in
from tests.fixtures.identities import MakeUser


class TestInheritance:
    async def test_parent_grant_reaches_device_two_levels_down_and_revocation_is_immediate(
        self, app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        alice = await signed_in(make_user, client)
        bob = await signed_in(make_user, client)
        engine, owner = services_of(app).engine, principal_of(alice)
        top = await new_folder(engine, owner=owner)
        middle = await new_folder(engine, owner=owner, parent=top)
        bottom = await new_folder(engine, owner=owner, parent=middle)
        product = await new_product(engine, owner=owner)
        device, _ = await new_device(engine, owner=owner, product=product, folder=bottom)
        device_url = f"{API}/devices/{device.id}"
        assert (await client.get(device_url, headers=bob.headers)).status_code == 404

        share = f"{API}/folders/{top.id}/permissions/{bob.uid}"
        resp = await client.put(share, json={"role": "viewer"}, headers=alice.headers)
        assert resp.status_code == 200, resp.text
        assert (await client.get(device_url, headers=bob.headers)).status_code == 200
        listed = await client.get(f"{API}/devices", headers=bob.headers)
        assert [d["id"] for d in listed.json()["items"]] == [str(device.id)]

        assert (await client.delete(share, headers=alice.headers)).status_code == 204
        assert (await client.get(device_url, headers=bob.headers)).status_code == 404
        listed = await client.get(f"{API}/devices", headers=bob.headers)
        assert listed.json()["items"] == []


class TestMoveAndConflicts:
    async def test_cycle_is_409_and_changes_nothing(
        self, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        alice = await signed_in(make_user, client)
        top = await api_folder(client, alice)
        child = await api_folder(client, alice, parent=top["id"])
        for target in (top["id"], child["id"]):
            resp = await client.patch(
                f"{API}/folders/{top['id']}", json={"parent_id": target}, headers=alice.headers
            )
            assert resp.status_code == 409, resp.text
            assert resp.json()["type"] == "/problems/folder-cycle"
        again = await client.get(f"{API}/folders/{top['id']}", headers=alice.headers)
        assert again.json() == top

    async def test_duplicate_sibling_name_is_409(
        self, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        alice = await signed_in(make_user, client)
        top = await api_folder(client, alice)
        body = {"name": "Hall", "parent_id": top["id"]}
        assert (
            await client.post(f"{API}/folders", json=body, headers=alice.headers)
        ).status_code == 201
        resp = await client.post(f"{API}/folders", json=body, headers=alice.headers)
        assert resp.status_code == 409
        children = await client.get(f"{API}/folders?parent_id={top['id']}", headers=alice.headers)
        assert len(children.json()["items"]) == 1

    async def test_move_updates_ancestors_over_http(
        self, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        alice = await signed_in(make_user, client)
        a, b = await api_folder(client, alice), await api_folder(client, alice)
        moving = await api_folder(client, alice, parent=a["id"])
        leaf = await api_folder(client, alice, parent=moving["id"])
        resp = await client.patch(
            f"{API}/folders/{moving['id']}", json={"parent_id": b["id"]}, headers=alice.headers
        )
        assert resp.status_code == 200, resp.text
        got = await client.get(f"{API}/folders/{leaf['id']}", headers=alice.headers)
        assert got.json()["ancestors"] == [b["id"], moving["id"]]

    async def test_non_empty_delete_is_409_then_recursive_works(
        self, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        alice = await signed_in(make_user, client)
        top = await api_folder(client, alice)
        child = await api_folder(client, alice, parent=top["id"])
        url = f"{API}/folders/{top['id']}"
        assert (await client.delete(url, headers=alice.headers)).status_code == 409
        assert (await client.get(url, headers=alice.headers)).status_code == 200
        assert (
            await client.delete(url + "?recursive=true", headers=alice.headers)
        ).status_code == 204
        gone = await client.get(f"{API}/folders/{child['id']}", headers=alice.headers)
        assert gone.status_code == 404


BAD_CREATE: list[tuple[str, Any]] = [
    ("empty name", {"name": ""}),
    ("blank name", {"name": "   "}),
    ("long name", {"name": "x" * 101}),
    ("missing name", {}),
    ("malformed parent", {"name": "ok", "parent_id": "not-an-id"}),
    ("unknown field", {"name": "ok", "colour": "red"}),
    ("name not a string", {"name": 5}),
]


class TestBadInput:
    @pytest.mark.parametrize(("case", "body"), BAD_CREATE, ids=[c for c, _ in BAD_CREATE])
    async def test_create_422_and_nothing_stored(
        self,
        case: str,
        body: Any,
        client: httpx.AsyncClient,
        make_user: MakeUser,
        mongo_db: MongoDatabase,
    ) -> None:
        alice = await signed_in(make_user, client)
        resp = await client.post(f"{API}/folders", json=body, headers=alice.headers)
        assert resp.status_code == 422, resp.text
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert await mongo_db.folders.count_documents({"created_by": alice.uid}) == 0

    @pytest.mark.parametrize(
        ("folder_id", "code"),
        [
            ("nope", 422),
            ("0" * 23, 422),
            ("g" * 24, 422),
            ("0" * 24, 404),
            ("6553f1c2a1b2c3d4e5f60718", 404),
        ],
    )
    async def test_unknown_ids_are_404_malformed_422(
        self, folder_id: str, code: int, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        alice = await signed_in(make_user, client)
        for method, path, body in (
            ("GET", "", None),
            ("PATCH", "", {"name": "x"}),
            ("DELETE", "", None),
            ("GET", "/permissions", None),
        ):
            resp = await client.request(
                method, f"{API}/folders/{folder_id}{path}", json=body, headers=alice.headers
            )
            assert resp.status_code == code, resp.text

    async def test_parent_filter_must_be_an_id(
        self, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        alice = await signed_in(make_user, client)
        resp = await client.get(f"{API}/folders?parent_id=zzz", headers=alice.headers)
        assert resp.status_code == 422

    @pytest.mark.parametrize("query", ["limit=0", "limit=100000", "cursor=bogus", "limit=x"])
    async def test_bad_paging_is_422(
        self, query: str, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        alice = await signed_in(make_user, client)
        resp = await client.get(f"{API}/folders?{query}", headers=alice.headers)
        assert resp.status_code == 422, resp.text

    async def test_invalid_rename_changes_nothing(
        self, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        alice = await signed_in(make_user, client)
        top = await api_folder(client, alice)
        url = f"{API}/folders/{top['id']}"
        for body in ({"name": ""}, {"name": None}, {"name": "y" * 101}, {"parent_id": "bad"}):
            assert (await client.patch(url, json=body, headers=alice.headers)).status_code == 422
        assert (await client.get(url, headers=alice.headers)).json() == top
