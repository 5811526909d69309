"""The dependencies with real principals (until identity is on main, called directly)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest
from fastapi import FastAPI, Request

from app.auth.principal import Principal, PrincipalKind
from app.auth.quotas import RateLimit, enforce_rate_limit, quota_for
from app.core.config import Settings
from app.core.services import services_of
from app.ratelimit.dependencies import check_device, limits_itself, records
from app.ratelimit.exceptions import RateLimitExceeded
from tests.ratelimit.conftest import DEFAULT_LIMITS

ProbeApp = Callable[..., AbstractAsyncContextManager[FastAPI]]
USER = Principal(kind=PrincipalKind.USER, uid="u-1")
ADMIN = Principal(kind=PrincipalKind.USER, uid="a-1", roles=frozenset({"admin"}))
MASTER = Principal(kind=PrincipalKind.MASTER, uid="master")
DEVICE = Principal(kind=PrincipalKind.DEVICE, uid="d-1", device_id="d-1")


def request_to(app: FastAPI, endpoint: object = None) -> Request:
    """A request as the app would route it, from 198.51.100.40."""
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/v1/x",
        "headers": [],
        "query_string": b"",
        "client": ("198.51.100.40", 1),
        "app": app,
        "endpoint": endpoint,
    }
    return Request(scope)


async def admitted(app: FastAPI, principal: Principal | None, n: int) -> int:
    count = 0
    for _ in range(n):
        try:
            await enforce_rate_limit(request_to(app), principal)
        except RateLimitExceeded:
            continue
        count += 1
    return count


class TestDefaultPolicies:
    async def test_admin_and_user_quotas_differ(self, probe_app: ProbeApp) -> None:
        async with probe_app(rate_limit_user_limit=3, rate_limit_admin_limit=6) as app:
            assert await admitted(app, USER, 10) == 3
            assert await admitted(app, ADMIN, 10) == 6

    async def test_master_token_is_exempt(self, probe_app: ProbeApp) -> None:
        async with probe_app(rate_limit_admin_limit=1) as app:
            request = request_to(app)
            assert await admitted(app, MASTER, 20) == 20
            await enforce_rate_limit(request, MASTER)
            assert records(request) == []

    async def test_devices_counted_per_device(self, probe_app: ProbeApp) -> None:
        async with probe_app(rate_limit_device_limit=2) as app:
            other = Principal(kind=PrincipalKind.DEVICE, uid="d-2", device_id="d-2")
            assert await admitted(app, DEVICE, 5) == 2
            assert await admitted(app, other, 5) == 2


class TestProductCreatePolicy:
    async def test_one_for_users_unlimited_for_admins(self, probe_app: ProbeApp) -> None:
        limit = RateLimit("product_create")
        async with probe_app() as app:
            await limit(request_to(app), USER)
            with pytest.raises(RateLimitExceeded) as refused:
                await limit(request_to(app), USER)
            assert refused.value.extra["policy"] == "product_create"
            assert int(refused.value.headers["Retry-After"]) > 3600
            for _ in range(5):
                await limit(request_to(app), ADMIN)
                await limit(request_to(app), MASTER)


class TestDeviceIngest:
    async def test_product_override_replaces_the_default(self, probe_app: ProbeApp) -> None:
        @limits_itself
        async def ingest() -> None:
            return None

        async with probe_app(rate_limit_device_limit=2) as app:
            passed = 0
            for _ in range(6):
                request = request_to(app, endpoint=ingest)
                await enforce_rate_limit(request, DEVICE)  # skipped on this route
                try:
                    await check_device(request, "d-1", limit_per_minute=4)
                except RateLimitExceeded:
                    continue
                passed += 1
                assert [p.limit for p, _ in records(request)] == [4]
            assert passed == 4


class TestQuota:
    def test_shows_the_policy(self, make_settings: Callable[..., Settings]) -> None:
        settings = make_settings(**DEFAULT_LIMITS)
        assert quota_for(USER, settings).model_dump() == {
            "policy": "user",
            "exempt": False,
            "limit": 100,
            "window_s": 60,
            "remaining": None,
            "reset_s": None,
        }
        assert quota_for(ADMIN, settings).limit == 10_000
        assert quota_for(MASTER, settings).exempt
        assert quota_for(None, settings).limit == 60

    async def test_shows_what_is_left_for_this_request(self, probe_app: ProbeApp) -> None:
        async with probe_app() as app:
            request = request_to(app)
            await enforce_rate_limit(request, USER)
            quota = quota_for(USER, services_of(app).settings, request=request)
        assert quota.remaining == 99
        assert quota.reset_s is not None
