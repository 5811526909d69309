"""The principal dependencies: who each kind of credential resolves to, and what is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import APIRouter
from odmantic import AIOEngine

from app.auth import device_keys
from app.auth.dependencies import (
    AdminPrincipal,
    CurrentPrincipal,
    OptionalPrincipal,
    UserPrincipal,
)
from app.auth.principal import Principal
from app.core.config import Settings
from app.core.db import MongoDatabase
from app.main import create_app
from tests.fixtures.app import client_for
from tests.fixtures.catalog import MASTER, new_device, new_product
from tests.fixtures.identities import TEST_MASTER_TOKEN, ApiSession, MakeUser, bearer


def describe(principal: Principal | None) -> dict[str, Any] | None:
    if principal is None:
        return None
    return {
        "kind": principal.kind.value,
        "uid": principal.uid,
        "roles": sorted(principal.roles),
        "device_id": principal.device_id,
    }


def probe_router() -> APIRouter:
    """Routes that answer with the principal each dependency resolved."""
    router = APIRouter(prefix="/probe")

    @router.get("/optional")
    async def optional(first: OptionalPrincipal, second: OptionalPrincipal) -> Any:
        assert first is second  # resolved once per request
        return {"principal": describe(first)}

    @router.get("/current")
    async def current(principal: CurrentPrincipal) -> Any:
        return {"principal": describe(principal)}

    @router.get("/user")
    async def user(principal: UserPrincipal) -> Any:
        return {"principal": describe(principal)}

    @router.get("/admin")
    async def admin(principal: AdminPrincipal) -> Any:
        return {"principal": describe(principal)}

    return router


@pytest.fixture(scope="module")
async def probe(make_settings: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    """A client on an app with the probe routes (same database and emulator)."""
    app = create_app(make_settings())
    app.include_router(probe_router())
    async with LifespanManager(app, startup_timeout=60), client_for(app) as http:
        yield http


@pytest.fixture
async def device(engine: AIOEngine) -> dict[str, Any]:
    """A stored device, with its plain key."""
    product = await new_product(engine, owner=MASTER)
    stored, key = await new_device(engine, owner=MASTER, product=product)
    return {"id": str(stored.id), "key": key}


class TestAnonymous:
    async def test_optional_is_none(self, probe: httpx.AsyncClient) -> None:
        resp = await probe.get("/probe/optional")
        assert resp.json() == {"principal": None}

    @pytest.mark.parametrize("route", ["current", "user", "admin"])
    async def test_protected_is_401(self, probe: httpx.AsyncClient, route: str) -> None:
        resp = await probe.get(f"/probe/{route}")
        assert resp.status_code == 401
        assert resp.headers["www-authenticate"] == "Bearer"
        assert resp.json()["type"] == "/problems/credentials-required"

    @pytest.mark.parametrize(
        "header",
        [
            {"Authorization": "Basic dXNlcjpwYXNz"},
            {"Authorization": "Bearer"},
            {"Authorization": "Bearer   "},
            {"Authorization": "Token abc"},
            {"Authorization": "Bearer not-a-token"},
            {"X-Device-Key": "not-a-device-key"},
        ],
    )
    async def test_bad_credentials_are_401_even_where_optional(
        self, probe: httpx.AsyncClient, header: dict[str, str]
    ) -> None:
        resp = await probe.get("/probe/optional", headers=header)
        assert resp.status_code == 401
        assert resp.headers["www-authenticate"] == "Bearer"


class TestMasterToken:
    async def test_master_is_admin(self, probe: httpx.AsyncClient) -> None:
        resp = await probe.get("/probe/admin", headers=bearer(TEST_MASTER_TOKEN))
        assert resp.json()["principal"] == {
            "kind": "master",
            "uid": "master",
            "roles": ["admin"],
            "device_id": None,
        }

    @pytest.mark.parametrize(
        "token", [TEST_MASTER_TOKEN[:-1], TEST_MASTER_TOKEN + "x", TEST_MASTER_TOKEN.upper()]
    )
    async def test_wrong_master_token_is_401(self, probe: httpx.AsyncClient, token: str) -> None:
        assert (await probe.get("/probe/admin", headers=bearer(token))).status_code == 401

    async def test_unset_master_token_disables_it(
        self, make_settings: Callable[..., Settings], app_with: Any
    ) -> None:
        async with app_with(make_settings(master_token=None)) as app, client_for(app) as http:
            resp = await http.get("/api/v1/users", headers=bearer(TEST_MASTER_TOKEN))
        assert resp.status_code == 401


class TestDeviceKey:
    async def test_header_and_bearer_resolve_to_the_device(
        self, probe: httpx.AsyncClient, device: dict[str, Any]
    ) -> None:
        expected = {"kind": "device", "uid": device["id"], "roles": [], "device_id": device["id"]}
        for headers in ({"X-Device-Key": device["key"]}, bearer(device["key"])):
            resp = await probe.get("/probe/current", headers=headers)
            assert resp.json()["principal"] == expected

    @pytest.mark.parametrize("route", ["user", "admin"])
    async def test_device_is_403_on_user_routes(
        self, probe: httpx.AsyncClient, device: dict[str, Any], route: str
    ) -> None:
        resp = await probe.get(f"/probe/{route}", headers={"X-Device-Key": device["key"]})
        assert resp.status_code == 403

    async def test_unknown_key_is_401(self, probe: httpx.AsyncClient) -> None:
        key = device_keys.generate().key
        assert (await probe.get("/probe/optional", headers=bearer(key))).status_code == 401


class TestUsers:
    async def test_firebase_and_access_tokens_resolve_to_the_same_user(
        self, probe: httpx.AsyncClient, make_user: MakeUser, api_session: ApiSession
    ) -> None:
        user = await make_user()
        tokens = await api_session(user)
        for headers in (user.headers, bearer(tokens["access_token"])):
            resp = await probe.get("/probe/user", headers=headers)
            assert resp.json()["principal"] == {
                "kind": "user",
                "uid": user.uid,
                "roles": [],
                "device_id": None,
            }

    async def test_non_admin_is_403_on_admin_route_and_nothing_is_written(
        self, probe: httpx.AsyncClient, make_user: MakeUser, mongo_db: MongoDatabase
    ) -> None:
        user = await make_user()
        resp = await probe.get("/probe/admin", headers=user.headers)
        assert resp.status_code == 403
        assert resp.json()["type"] == "/problems/admin-required"
        assert await mongo_db.users.count_documents({"uid": user.uid}) == 0
        assert await mongo_db.email_outbox.count_documents({"to": user.email}) == 0

    async def test_optional_does_not_write(
        self, probe: httpx.AsyncClient, make_user: MakeUser, mongo_db: MongoDatabase
    ) -> None:
        user = await make_user()
        resp = await probe.get("/probe/optional", headers=user.headers)
        assert resp.json()["principal"]["uid"] == user.uid
        assert await mongo_db.users.count_documents({"uid": user.uid}) == 0
