"""Quotas by who is calling, over HTTP with real identities (Firebase emulator, master token)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import httpx
from fastapi import FastAPI

from tests.fixtures.identities import TEST_MASTER_TOKEN, MakeUser, bearer

ProbeApp = Callable[..., AbstractAsyncContextManager[FastAPI]]


def client(app: FastAPI, peer: str = "198.51.100.80") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def statuses(
    http: httpx.AsyncClient, path: str, headers: dict[str, str], n: int
) -> list[int]:
    return [(await http.get(path, headers=headers)).status_code for _ in range(n)]


class TestQuotasByIdentity:
    async def test_admins_get_more_than_users(
        self, probe_app: ProbeApp, make_user: MakeUser
    ) -> None:
        user = await make_user()
        admin = await make_user(admin=True)
        async with (
            probe_app(rate_limit_user_limit=2, rate_limit_admin_limit=4) as app,
            client(app) as http,
        ):
            assert await statuses(http, "/api/v1/_probe", user.headers, 4) == [200, 200, 429, 429]
            assert await statuses(http, "/api/v1/_probe", admin.headers, 6) == [200] * 4 + [429] * 2
            answer = await http.get("/api/v1/_probe", headers=admin.headers)
        assert answer.headers["RateLimit-Policy"] == '"admin";q=4;w=60'

    async def test_users_are_counted_per_user_not_per_address(
        self, probe_app: ProbeApp, make_user: MakeUser
    ) -> None:
        first, second = await make_user(), await make_user()
        async with probe_app(rate_limit_user_limit=1) as app, client(app) as http:
            assert await statuses(http, "/api/v1/_probe", first.headers, 2) == [200, 429]
            assert await statuses(http, "/api/v1/_probe", second.headers, 1) == [200]
            assert await statuses(http, "/api/v1/_probe", {}, 1) == [200]  # anonymous, by IP

    async def test_master_token_is_never_limited(self, probe_app: ProbeApp) -> None:
        async with (
            probe_app(rate_limit_admin_limit=1, rate_limit_anonymous_limit=1) as app,
            client(app) as http,
        ):
            answers = [
                await http.get("/api/v1/_probe", headers=bearer(TEST_MASTER_TOKEN))
                for _ in range(5)
            ]
        assert [a.status_code for a in answers] == [200] * 5
        assert "RateLimit" not in answers[0].headers


class TestProductCreation:
    async def test_users_once_per_window_admins_unlimited(
        self, probe_app: ProbeApp, make_user: MakeUser
    ) -> None:
        user = await make_user()
        admin = await make_user(admin=True)
        async with probe_app() as app, client(app) as http:
            made = [
                (await http.post("/api/v1/_probe/products", headers=user.headers)).status_code
                for _ in range(2)
            ]
            by_admin = [
                (await http.post("/api/v1/_probe/products", headers=admin.headers)).status_code
                for _ in range(3)
            ]
        assert made == [200, 429]
        assert by_admin == [200, 200, 200]


class TestMe:
    async def test_shows_the_quota(self, probe_app: ProbeApp, make_user: MakeUser) -> None:
        user = await make_user()
        async with probe_app() as app, client(app) as http:
            await http.get("/api/v1/_probe", headers=user.headers)
            answer = await http.get("/api/v1/auth/me", headers=user.headers)
        assert answer.status_code == 200
        quota = answer.json()["quota"]
        assert quota["policy"] == "user"
        assert (quota["limit"], quota["window_s"], quota["remaining"]) == (100, 60, 98)
        assert answer.headers["X-RateLimit-Remaining"] == "98"

    async def test_master_is_exempt(self, probe_app: ProbeApp) -> None:
        async with probe_app() as app, client(app) as http:
            answer = await http.get("/api/v1/auth/me", headers=bearer(TEST_MASTER_TOKEN))
        assert answer.json()["quota"]["exempt"] is True
