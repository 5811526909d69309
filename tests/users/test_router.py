"""Admins, `/auth/me`, and the admin-only user endpoints, against the Firebase emulator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from bson import ObjectId
from fastapi import FastAPI
from firebase_admin import auth
from odmantic import AIOEngine

from app.core.config import Settings
from app.core.db import MongoDatabase
from app.core.services import services_of
from tests.fixtures.app import client_for, running_app
from tests.fixtures.catalog import MASTER, new_device, new_product
from tests.fixtures.identities import (
    ApiSession,
    MakeUser,
    TestUser,
    bearer,
    unique_email,
    wall_clock_reaches,
)

ME = "/api/v1/auth/me"
USERS = "/api/v1/users"
ADMIN_DOMAIN = "admins.sensorhub.test"


async def is_admin(client: httpx.AsyncClient, headers: dict[str, str]) -> bool:
    """What `/auth/me` says, cross-checked with an admin-only route."""
    me = await client.get(ME, headers=headers)
    assert me.status_code == 200, me.text
    listing = await client.get(USERS, params={"limit": 1}, headers=headers)
    assert listing.status_code in (200, 403)
    assert me.json()["is_admin"] is (listing.status_code == 200)
    return bool(me.json()["is_admin"])


@pytest.fixture(scope="module")
async def domain_client(
    make_settings: Callable[..., Settings],
) -> AsyncIterator[httpx.AsyncClient]:
    """An app whose ADMIN_EMAIL_DOMAINS names one test domain."""
    settings = make_settings(admin_email_domains=f"{ADMIN_DOMAIN}, other.test")
    async with running_app(settings) as app, client_for(app) as http:
        yield http


class TestMe:
    async def test_profile_and_roles(self, client: httpx.AsyncClient, make_user: MakeUser) -> None:
        user = await make_user(display_name="Grace", email_verified=True)
        resp = await client.get(ME, headers=user.headers)
        assert resp.status_code == 200
        body = resp.json()
        assert body["uid"] == user.uid
        assert body["kind"] == "user"
        assert body["email"] == user.email
        assert body["email_verified"] is True
        assert body["display_name"] == "Grace"
        assert body["roles"] == []
        assert body["created_at"].endswith("Z")

    async def test_master(self, client: httpx.AsyncClient, master_headers: dict[str, str]) -> None:
        body = (await client.get(ME, headers=master_headers)).json()
        assert (body["kind"], body["uid"], body["roles"], body["is_admin"]) == (
            "master",
            "master",
            ["admin"],
            True,
        )

    async def test_anonymous_is_401(self, client: httpx.AsyncClient) -> None:
        resp = await client.get(ME)
        assert resp.status_code == 401
        assert resp.headers["www-authenticate"] == "Bearer"


class TestAdmins:
    async def test_admin_by_claim(
        self, client: httpx.AsyncClient, make_user: MakeUser, api_session: ApiSession
    ) -> None:
        admin = await make_user(admin=True)
        assert await is_admin(client, admin.headers)
        tokens = await api_session(admin)
        assert tokens["user"]["roles"] == ["admin"]
        assert await is_admin(client, bearer(tokens["access_token"]))

    async def test_claim_must_be_true_not_truthy(
        self, app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser, emulator_rest: Any
    ) -> None:
        user = await make_user()
        await asyncio.to_thread(
            auth.set_custom_user_claims,
            user.uid,
            {"admin": "yes"},
            app=services_of(app).firebase.app,
        )
        fresh = await emulator_rest.sign_in(email=user.email, password=user.password)
        assert not await is_admin(client, bearer(fresh["idToken"]))

    async def test_admin_by_verified_domain(
        self, domain_client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        user = await make_user(email=unique_email(ADMIN_DOMAIN), email_verified=True)
        assert await is_admin(domain_client, user.headers)

    async def test_unverified_domain_email_is_not_admin(
        self, domain_client: httpx.AsyncClient, make_user: MakeUser, api_session: ApiSession
    ) -> None:
        user = await make_user(email=unique_email(ADMIN_DOMAIN), email_verified=False)
        assert not await is_admin(domain_client, user.headers)

    async def test_lookalike_domain_is_not_admin(
        self, domain_client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        user = await make_user(email=unique_email(f"evil{ADMIN_DOMAIN}"), email_verified=True)
        assert not await is_admin(domain_client, user.headers)

    async def test_domain_is_not_admin_without_the_setting(
        self, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        user = await make_user(email=unique_email(ADMIN_DOMAIN), email_verified=True)
        assert not await is_admin(client, user.headers)


async def seen(client: httpx.AsyncClient, user: TestUser) -> None:
    """Let the API see the user once (creates their document)."""
    assert (await client.get(ME, headers=user.headers)).status_code == 200


class TestAccessMatrix:
    @pytest.fixture
    async def target(self, client: httpx.AsyncClient, make_user: MakeUser) -> TestUser:
        user = await make_user()
        await seen(client, user)
        return user

    @pytest.fixture
    async def device_headers(self, engine: AIOEngine) -> dict[str, str]:
        product = await new_product(engine, owner=MASTER)
        _, key = await new_device(engine, owner=MASTER, product=product)
        return {"X-Device-Key": key}

    @pytest.mark.parametrize(
        ("method", "path", "body"),
        [
            ("GET", USERS, None),
            ("GET", USERS + "/{uid}", None),
            ("PATCH", USERS + "/{uid}", {"admin": True}),
        ],
    )
    async def test_matrix(
        self,
        client: httpx.AsyncClient,
        make_user: MakeUser,
        master_headers: dict[str, str],
        device_headers: dict[str, str],
        target: TestUser,
        method: str,
        path: str,
        body: Any,
    ) -> None:
        url = path.format(uid=target.uid)
        user = await make_user()
        admin = await make_user(admin=True)
        expected = [
            ({}, 401),
            ({"Authorization": "Bearer wrong"}, 401),
            (bearer("test-master-token-wrong"), 401),
            (user.headers, 403),
            (device_headers, 403),
            (admin.headers, 200),
            (master_headers, 200),
        ]
        for headers, status in expected:
            resp = await client.request(method, url, json=body, headers=headers)
            assert resp.status_code == status, (headers, resp.text)
            if status >= 400:
                assert resp.headers["content-type"] == "application/problem+json"
            if status == 401:
                assert resp.headers["www-authenticate"] == "Bearer"

    async def test_refused_patch_changes_nothing(
        self,
        client: httpx.AsyncClient,
        make_user: MakeUser,
        target: TestUser,
        mongo_db: MongoDatabase,
    ) -> None:
        before = await mongo_db.users.find_one({"uid": target.uid})
        user = await make_user()
        resp = await client.patch(
            f"{USERS}/{target.uid}", json={"admin": True}, headers=user.headers
        )
        assert resp.status_code == 403
        assert await mongo_db.users.find_one({"uid": target.uid}) == before
        assert await mongo_db.users.count_documents({"uid": user.uid}) == 0


class TestListUsers:
    async def test_cursor_pagination_and_email_prefix(
        self, client: httpx.AsyncClient, make_user: MakeUser, master_headers: dict[str, str]
    ) -> None:
        prefix = f"page-{ObjectId()}"
        made = []
        for i in range(5):
            user = await make_user(email=f"{prefix}-{i}@example.com")
            await seen(client, user)
            made.append(user.uid)
        await seen(client, await make_user(email=f"other-{prefix}@example.com"))

        pages, cursor = [], None
        while True:
            params: dict[str, Any] = {"limit": 2, "email_prefix": prefix.upper()}
            if cursor:
                params["cursor"] = cursor
            resp = await client.get(USERS, params=params, headers=master_headers)
            assert resp.status_code == 200, resp.text
            page = resp.json()
            pages.append([u["uid"] for u in page["items"]])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert [len(p) for p in pages] == [2, 2, 1]
        assert [uid for page in pages for uid in page] == made

    @pytest.mark.parametrize(
        "params",
        [
            {"limit": 0},
            {"limit": 1001},  # over PAGE_SIZE_MAX, like every list
            {"limit": "many"},
            {"cursor": "not-an-id"},
            {"cursor": "zz" * 12},
            {"email_prefix": ""},
        ],
    )
    async def test_bad_query_is_422(
        self, client: httpx.AsyncClient, master_headers: dict[str, str], params: dict[str, Any]
    ) -> None:
        resp = await client.get(USERS, params=params, headers=master_headers)
        assert resp.status_code == 422
        assert resp.headers["content-type"] == "application/problem+json"

    async def test_prefix_with_regex_characters_is_literal(
        self, client: httpx.AsyncClient, master_headers: dict[str, str]
    ) -> None:
        resp = await client.get(USERS, params={"email_prefix": ".*"}, headers=master_headers)
        assert resp.status_code == 200
        assert resp.json()["items"] == []


class TestGetUser:
    async def test_unknown_uid_is_404(
        self, client: httpx.AsyncClient, master_headers: dict[str, str]
    ) -> None:
        resp = await client.get(f"{USERS}/nobody-{ObjectId()}", headers=master_headers)
        assert resp.status_code == 404
        assert resp.json()["type"] == "/problems/user-not-found"


class TestUpdateUser:
    async def test_grant_and_revoke_admin(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        make_user: MakeUser,
        master_headers: dict[str, str],
        emulator_rest: Any,
    ) -> None:
        user = await make_user()
        await seen(client, user)
        resp = await client.patch(
            f"{USERS}/{user.uid}", json={"admin": True}, headers=master_headers
        )
        assert resp.status_code == 200
        # Only ID tokens issued from the next whole second on carry the new claim.
        claims_from = int(time.time()) + 1
        assert resp.json()["roles"] == ["admin"]
        # Takes effect at once, even with the ID token issued before the change ...
        assert await is_admin(client, user.headers)
        # ... and the Firebase custom claim is set, so new ID tokens carry it.
        record = await asyncio.to_thread(auth.get_user, user.uid, app=services_of(app).firebase.app)
        assert record.custom_claims == {"admin": True}
        await wall_clock_reaches(claims_from)
        fresh = await emulator_rest.sign_in(email=user.email, password=user.password)
        assert await is_admin(client, bearer(fresh["idToken"]))

        resp = await client.patch(
            f"{USERS}/{user.uid}", json={"admin": False}, headers=master_headers
        )
        assert resp.json()["roles"] == []
        # The older ID token still says admin: true; the newer decision wins.
        assert not await is_admin(client, bearer(fresh["idToken"]))
        record = await asyncio.to_thread(auth.get_user, user.uid, app=services_of(app).firebase.app)
        assert not (record.custom_claims or {}).get("admin")

    async def test_disable_and_enable(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        make_user: MakeUser,
        api_session: ApiSession,
        master_headers: dict[str, str],
        mongo_db: MongoDatabase,
    ) -> None:
        user = await make_user()
        tokens = await api_session(user)
        resp = await client.patch(
            f"{USERS}/{user.uid}", json={"disabled": True}, headers=master_headers
        )
        assert resp.status_code == 200
        assert resp.json()["disabled"] is True
        before = await mongo_db.users.find_one({"uid": user.uid})
        for headers in (user.headers, bearer(tokens["access_token"])):
            denied = await client.get(ME, headers=headers)
            assert denied.status_code == 403
            assert denied.json()["type"] == "/problems/account-disabled"
        assert await mongo_db.users.find_one({"uid": user.uid}) == before
        assert await mongo_db.sessions.count_documents({"uid": user.uid, "revoked": False}) == 0
        record = await asyncio.to_thread(auth.get_user, user.uid, app=services_of(app).firebase.app)
        assert record.disabled is True

        resp = await client.patch(
            f"{USERS}/{user.uid}", json={"disabled": False}, headers=master_headers
        )
        assert resp.json()["disabled"] is False
        assert (await client.get(ME, headers=user.headers)).status_code == 200
        # Sessions ended by the disable stay ended.
        assert (await client.get(ME, headers=bearer(tokens["access_token"]))).status_code == 401

    @pytest.mark.parametrize(
        "body",
        [{}, {"admin": "yes"}, {"disabled": 1}, {"admin": True, "roles": ["admin"]}, []],
    )
    async def test_bad_body_is_422_and_changes_nothing(
        self,
        client: httpx.AsyncClient,
        make_user: MakeUser,
        master_headers: dict[str, str],
        mongo_db: MongoDatabase,
        body: Any,
    ) -> None:
        user = await make_user()
        await seen(client, user)
        before = await mongo_db.users.find_one({"uid": user.uid})
        resp = await client.patch(f"{USERS}/{user.uid}", json=body, headers=master_headers)
        assert resp.status_code == 422
        assert await mongo_db.users.find_one({"uid": user.uid}) == before
