"""Sign-in with a Firebase ID token, API sessions, rotation, reuse detection, logout."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from firebase_admin import auth

from app.core.db import MongoDatabase
from app.core.services import services_of
from tests.fixtures.identities import (
    ApiSession,
    MakeUser,
    bearer,
    edit_claims,
    next_second_after,
    token_claims,
)

SESSION = "/api/v1/auth/session"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/auth/me"


def assert_unauthorized(resp: httpx.Response) -> None:
    """401 problem+json with a Bearer challenge."""
    assert resp.status_code == 401, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.headers["www-authenticate"] == "Bearer"
    assert resp.json()["status"] == 401


async def firebase_call(app: FastAPI, func: Any, *args: Any, **kwargs: Any) -> Any:
    """Call firebase-admin (blocking) against the emulator, on the app's Firebase app."""
    return await asyncio.to_thread(func, *args, app=services_of(app).firebase.app, **kwargs)


class TestSessionFlow:
    async def test_sign_in_refresh_reuse_logout(
        self, client: httpx.AsyncClient, make_user: MakeUser, mongo_db: MongoDatabase
    ) -> None:
        user = await make_user(display_name="Ada")
        resp = await client.post(SESSION, json={"id_token": user.id_token})
        assert resp.status_code == 200, resp.text
        assert resp.headers["cache-control"] == "no-store"
        first = resp.json()
        assert first["token_type"] == "bearer"
        assert 890 <= first["expires_in"] <= 900
        assert first["refresh_expires_in"] > 29 * 86_400
        assert first["user"]["uid"] == user.uid
        assert first["user"]["display_name"] == "Ada"

        me = await client.get(ME, headers=bearer(first["access_token"]))
        assert me.status_code == 200
        assert me.json()["email"] == user.email

        rotated = await client.post(REFRESH, json={"refresh_token": first["refresh_token"]})
        assert rotated.status_code == 200, rotated.text
        second = rotated.json()
        assert second["refresh_token"] != first["refresh_token"]
        assert (
            token_claims(second["refresh_token"])["fid"]
            == token_claims(first["refresh_token"])["fid"]
        )
        assert (await client.get(ME, headers=bearer(second["access_token"]))).status_code == 200

        # The spent token comes back: theft is assumed, the whole family dies.
        reused = await client.post(REFRESH, json={"refresh_token": first["refresh_token"]})
        assert_unauthorized(reused)
        assert reused.json()["type"] == "/problems/refresh-token-reused"
        assert_unauthorized(
            await client.post(REFRESH, json={"refresh_token": second["refresh_token"]})
        )
        assert_unauthorized(await client.get(ME, headers=bearer(second["access_token"])))
        fid = token_claims(first["refresh_token"])["fid"]
        assert await mongo_db.sessions.count_documents({"family_id": fid, "revoked": False}) == 0

        # A new sign-in starts a fresh family; logout ends it.
        fresh = (await client.post(SESSION, json={"id_token": user.id_token})).json()
        out = await client.post(LOGOUT, json={"refresh_token": fresh["refresh_token"]})
        assert out.status_code == 204
        assert_unauthorized(await client.get(ME, headers=bearer(fresh["access_token"])))
        assert_unauthorized(
            await client.post(REFRESH, json={"refresh_token": fresh["refresh_token"]})
        )
        again = await client.post(LOGOUT, json={"refresh_token": fresh["refresh_token"]})
        assert again.status_code == 204

    async def test_concurrent_refreshes_one_wins(
        self, client: httpx.AsyncClient, make_user: MakeUser, api_session: ApiSession
    ) -> None:
        tokens = await api_session(await make_user())
        body = {"refresh_token": tokens["refresh_token"]}
        results = await asyncio.gather(*(client.post(REFRESH, json=body) for _ in range(2)))
        statuses = sorted(r.status_code for r in results)
        # At most one wins; the other is a reuse, which revokes the family. Depending on
        # timing the winner learns of the revocation before answering (both 401) or after.
        assert statuses in ([200, 401], [401, 401])
        for winner in (r.json() for r in results if r.status_code == 200):
            assert_unauthorized(
                await client.post(REFRESH, json={"refresh_token": winner["refresh_token"]})
            )

    async def test_logout_needs_a_valid_refresh_token(
        self, client: httpx.AsyncClient, make_user: MakeUser, api_session: ApiSession
    ) -> None:
        tokens = await api_session(await make_user())
        assert_unauthorized(await client.post(LOGOUT, json={"refresh_token": "nonsense"}))
        assert_unauthorized(
            await client.post(LOGOUT, json={"refresh_token": tokens["access_token"]})
        )
        assert (await client.get(ME, headers=bearer(tokens["access_token"]))).status_code == 200


class TestSessionCreationRejects:
    async def test_disabled_firebase_user(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        make_user: MakeUser,
        mongo_db: MongoDatabase,
    ) -> None:
        user = await make_user()
        await firebase_call(app, auth.update_user, user.uid, disabled=True)
        resp = await client.post(SESSION, json={"id_token": user.id_token})
        assert_unauthorized(resp)
        assert "disabled" in resp.json()["detail"]
        assert await mongo_db.users.count_documents({"uid": user.uid}) == 0
        assert await mongo_db.sessions.count_documents({"uid": user.uid}) == 0

    async def test_revoked_id_token(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        make_user: MakeUser,
        mongo_db: MongoDatabase,
    ) -> None:
        user = await make_user()
        await next_second_after(user.id_token)  # revocation compares whole seconds
        await firebase_call(app, auth.revoke_refresh_tokens, user.uid)
        resp = await client.post(SESSION, json={"id_token": user.id_token})
        assert_unauthorized(resp)
        assert "revoked" in resp.json()["detail"]
        assert await mongo_db.sessions.count_documents({"uid": user.uid}) == 0

    async def test_expired_id_token(
        self, client: httpx.AsyncClient, make_user: MakeUser, mongo_db: MongoDatabase
    ) -> None:
        user = await make_user()
        now = int(time.time())
        expired = edit_claims(user.id_token, iat=now - 7200, exp=now - 3600)
        resp = await client.post(SESSION, json={"id_token": expired})
        assert_unauthorized(resp)
        assert "expired" in resp.json()["detail"]
        assert_unauthorized(await client.get(ME, headers=bearer(expired)))
        assert await mongo_db.users.count_documents({"uid": user.uid}) == 0

    @pytest.mark.parametrize(
        "claims",
        [
            {"aud": "other-project", "iss": "https://securetoken.google.com/other-project"},
            {"aud": "other-project"},
            {"iss": "https://securetoken.google.com/other-project"},
            {"sub": None},
        ],
        ids=["other-project", "other-audience", "other-issuer", "no-subject"],
    )
    async def test_foreign_or_malformed_id_token(
        self,
        client: httpx.AsyncClient,
        make_user: MakeUser,
        mongo_db: MongoDatabase,
        claims: dict[str, Any],
    ) -> None:
        user = await make_user()
        foreign = edit_claims(user.id_token, **claims)
        assert_unauthorized(await client.post(SESSION, json={"id_token": foreign}))
        assert_unauthorized(await client.get(ME, headers=bearer(foreign)))
        assert await mongo_db.users.count_documents({"uid": user.uid}) == 0

    @pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", "e30.e30.", "x" * 4000])
    async def test_garbage(
        self, client: httpx.AsyncClient, mongo_db: MongoDatabase, token: str
    ) -> None:
        users_before = await mongo_db.users.count_documents({})
        sessions_before = await mongo_db.sessions.count_documents({})
        assert_unauthorized(await client.post(SESSION, json={"id_token": token}))
        assert await mongo_db.users.count_documents({}) == users_before
        assert await mongo_db.sessions.count_documents({}) == sessions_before

    @pytest.mark.parametrize(
        "body",
        [{}, {"id_token": ""}, {"id_token": 42}, {"id_token": "x" * 9000}, {"idToken": "x"}],
    )
    async def test_bad_body_is_422(self, client: httpx.AsyncClient, body: Any) -> None:
        resp = await client.post(SESSION, json=body)
        assert resp.status_code == 422
        assert resp.headers["content-type"] == "application/problem+json"


class TestRefreshRejects:
    async def test_disabled_user_cannot_refresh(
        self,
        client: httpx.AsyncClient,
        make_user: MakeUser,
        api_session: ApiSession,
        master_headers: dict[str, str],
    ) -> None:
        user = await make_user()
        tokens = await api_session(user)
        patched = await client.patch(
            f"/api/v1/users/{user.uid}", json={"disabled": True}, headers=master_headers
        )
        assert patched.status_code == 200
        resp = await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})
        assert resp.status_code == 403
        assert resp.json()["type"] == "/problems/account-disabled"

    async def test_unknown_family_token(
        self, client: httpx.AsyncClient, make_user: MakeUser, api_session: ApiSession
    ) -> None:
        tokens = await api_session(await make_user())
        out = await client.post(LOGOUT, json={"refresh_token": tokens["refresh_token"]})
        assert out.status_code == 204
        resp = await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})
        assert_unauthorized(resp)
        assert resp.json()["type"] == "/problems/invalid-credentials"
