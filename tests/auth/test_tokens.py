"""Forged API session tokens: each defect alone gets a 401, and nothing is written."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from jose import jwt

from app.auth import tokens
from app.core.config import Settings
from app.core.db import MongoDatabase
from app.core.models import utcnow
from tests.fixtures.identities import (
    TEST_JWT_SECRET,
    ApiSession,
    MakeUser,
    bearer,
    token_claims,
)

ME = "/api/v1/auth/me"
REFRESH = "/api/v1/auth/refresh"
WRONG_KEY = "another-secret-that-is-long-enough-to-look-real-000"


def b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def sign(claims: dict[str, Any], *, key: str = TEST_JWT_SECRET, alg: str = "HS256") -> str:
    return str(jwt.encode(claims, key, algorithm=alg))


@pytest.fixture
async def session(make_user: MakeUser, api_session: ApiSession) -> dict[str, Any]:
    """A real session: its tokens and the claims of each."""
    tokens = await api_session(await make_user())
    return {
        **tokens,
        "access": token_claims(tokens["access_token"]),
        "refresh": token_claims(tokens["refresh_token"]),
    }


def assert_rejected(resp: httpx.Response) -> None:
    assert resp.status_code == 401, resp.text
    assert resp.headers["www-authenticate"] == "Bearer"
    assert resp.headers["content-type"] == "application/problem+json"


class TestControl:
    async def test_resigned_genuine_claims_are_accepted(
        self, client: httpx.AsyncClient, session: dict[str, Any]
    ) -> None:
        # Proves the forgeries below fail for their one defect, not for how they were made.
        resp = await client.get(ME, headers=bearer(sign(session["access"])))
        assert resp.status_code == 200


class TestForgedAccessTokens:
    async def test_alg_none(self, client: httpx.AsyncClient, session: dict[str, Any]) -> None:
        token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(session['access'])}."
        assert_rejected(await client.get(ME, headers=bearer(token)))

    async def test_alg_none_with_the_genuine_signature(
        self, client: httpx.AsyncClient, session: dict[str, Any]
    ) -> None:
        _, payload, signature = session["access_token"].split(".")
        token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.{signature}"
        assert_rejected(await client.get(ME, headers=bearer(token)))

    async def test_wrong_key(self, client: httpx.AsyncClient, session: dict[str, Any]) -> None:
        token = sign(session["access"], key=WRONG_KEY)
        assert_rejected(await client.get(ME, headers=bearer(token)))

    @pytest.mark.parametrize("alg", ["HS384", "HS512"])
    async def test_other_hmac_algorithm_with_the_right_key(
        self, client: httpx.AsyncClient, session: dict[str, Any], alg: str
    ) -> None:
        token = sign(session["access"], alg=alg)
        assert_rejected(await client.get(ME, headers=bearer(token)))

    async def test_rs256_header(self, client: httpx.AsyncClient, session: dict[str, Any]) -> None:
        _, payload, signature = session["access_token"].split(".")
        token = f"{b64({'alg': 'RS256', 'typ': 'JWT'})}.{payload}.{signature}"
        assert_rejected(await client.get(ME, headers=bearer(token)))

    @pytest.mark.parametrize(
        ("claim", "value"),
        [
            ("iss", "someone-else"),
            ("aud", "another-api"),
            ("exp", int(time.time()) - 5),
            ("nbf", int(time.time()) + 3600),
            ("typ", "refresh"),
            ("typ", None),
            ("sub", None),
            ("jti", None),
            ("exp", None),
            ("aud", None),
        ],
        ids=[
            "wrong-issuer",
            "wrong-audience",
            "expired",
            "not-yet-valid",
            "refresh-typ",
            "no-typ",
            "no-sub",
            "no-jti",
            "no-exp",
            "no-aud",
        ],
    )
    async def test_bad_claim_signed_with_the_right_key(
        self, client: httpx.AsyncClient, session: dict[str, Any], claim: str, value: Any
    ) -> None:
        claims = dict(session["access"])
        if value is None:
            claims.pop(claim)
        else:
            claims[claim] = value
        assert_rejected(await client.get(ME, headers=bearer(sign(claims))))

    async def test_tampered_payload(
        self, client: httpx.AsyncClient, session: dict[str, Any], make_user: MakeUser
    ) -> None:
        other = await make_user()
        header, _, signature = session["access_token"].split(".")
        payload = b64({**session["access"], "sub": other.uid})
        assert_rejected(await client.get(ME, headers=bearer(f"{header}.{payload}.{signature}")))

    async def test_refresh_token_is_not_an_access_token(
        self, client: httpx.AsyncClient, session: dict[str, Any]
    ) -> None:
        assert_rejected(await client.get(ME, headers=bearer(session["refresh_token"])))


class TestForgedRefreshTokens:
    async def test_access_token_is_not_a_refresh_token(
        self, client: httpx.AsyncClient, session: dict[str, Any], mongo_db: MongoDatabase
    ) -> None:
        resp = await client.post(REFRESH, json={"refresh_token": session["access_token"]})
        assert_rejected(resp)
        # The genuine refresh token was not spent by the failed attempt.
        jti = session["refresh"]["jti"]
        assert (await mongo_db.sessions.find_one({"jti": jti}))["spent"] is False

    @pytest.mark.parametrize(
        "forge",
        [
            lambda c: sign(c, key=WRONG_KEY),
            lambda c: sign(c, alg="HS512"),
            lambda c: f"{b64({'alg': 'none'})}.{b64(c)}.",
            lambda c: sign({**c, "exp": int(time.time()) - 5}),
            lambda c: sign({**c, "aud": "another-api"}),
            lambda c: sign({**c, "jti": "not-a-stored-token"}),
        ],
        ids=["wrong-key", "hs512", "alg-none", "expired", "wrong-audience", "unknown-jti"],
    )
    async def test_forged_refresh_token(
        self,
        client: httpx.AsyncClient,
        session: dict[str, Any],
        mongo_db: MongoDatabase,
        forge: Any,
    ) -> None:
        before = await mongo_db.sessions.count_documents({})
        resp = await client.post(REFRESH, json={"refresh_token": forge(session["refresh"])})
        assert_rejected(resp)
        assert await mongo_db.sessions.count_documents({}) == before
        fid = session["refresh"]["fid"]
        assert await mongo_db.sessions.count_documents({"family_id": fid, "revoked": True}) == 0


class TestVerifiedAccessTokens:
    """Access tokens verified once are recognised again without the signature check, but
    never past their expiry, and never under another key."""

    def test_expired_is_not_recognised(self, settings: Settings) -> None:
        now = utcnow()
        issued = tokens.issue(
            settings, typ=tokens.ACCESS, uid="u1", family_id="f1", session_started_at=now
        )
        claims = tokens.decode(settings, issued.token, typ=tokens.ACCESS)
        tokens.remember_access(settings, issued.token, claims)
        assert tokens.verified_access(settings, issued.token) == claims
        expired = dataclasses.replace(claims, expires_at=now - timedelta(seconds=1))
        tokens.remember_access(settings, issued.token, expired)
        assert tokens.verified_access(settings, issued.token) is None

    def test_other_key_is_not_recognised(
        self, settings: Settings, make_settings: Callable[..., Settings]
    ) -> None:
        issued = tokens.issue(
            settings, typ=tokens.ACCESS, uid="u2", family_id="f2", session_started_at=utcnow()
        )
        claims = tokens.decode(settings, issued.token, typ=tokens.ACCESS)
        tokens.remember_access(settings, issued.token, claims)
        other = make_settings(jwt_secret="another-secret-" + "z" * 40)
        assert tokens.verified_access(other, issued.token) is None
