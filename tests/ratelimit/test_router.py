"""The limiter through HTTP: headers, 429 problems, client IPs and proxies, switches."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import httpx
from fastapi import FastAPI

from app.api import api_router
from app.auth.quotas import enforce_rate_limit


def client(app: FastAPI, peer: str) -> httpx.AsyncClient:
    """An HTTP client whose requests come from the socket address `peer`."""
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


ProbeApp = Callable[..., AbstractAsyncContextManager[FastAPI]]


class TestWiring:
    def test_every_api_route_passes_the_limiter(self) -> None:
        assert any(dep.dependency is enforce_rate_limit for dep in api_router.dependencies)


class TestHeaders:
    async def test_present_on_limited_responses(self, probe_app: ProbeApp) -> None:
        async with (
            probe_app(rate_limit_anonymous_limit=3) as app,
            client(app, "198.51.100.1") as http,
        ):
            answer = await http.get("/api/v1/_probe")
        assert answer.status_code == 200
        assert answer.headers["RateLimit-Policy"] == '"anonymous";q=3;w=60'
        assert answer.headers["RateLimit"].startswith('"anonymous";r=2;t=')
        assert answer.headers["X-RateLimit-Limit"] == "3"
        assert answer.headers["X-RateLimit-Remaining"] == "2"
        assert 60 <= int(answer.headers["X-RateLimit-Reset"]) <= 120
        assert "Retry-After" not in answer.headers

    async def test_present_when_the_route_returns_a_response(self, probe_app: ProbeApp) -> None:
        async with (
            probe_app(rate_limit_anonymous_limit=3) as app,
            client(app, "198.51.100.2") as http,
        ):
            answer = await http.get("/api/v1/_probe/raw")
        assert answer.text == "raw"
        assert answer.headers["X-RateLimit-Remaining"] == "2"

    async def test_absent_outside_the_api(self, probe_app: ProbeApp) -> None:
        async with (
            probe_app(rate_limit_anonymous_limit=1) as app,
            client(app, "198.51.100.3") as http,
        ):
            answers = [await http.get("/health") for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert "RateLimit" not in answers[0].headers

    async def test_off_when_disabled(self, probe_app: ProbeApp) -> None:
        async with probe_app(rate_limit_enabled=False, rate_limit_anonymous_limit=1) as app:
            async with client(app, "198.51.100.4") as http:
                answers = [await http.get("/api/v1/_probe") for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert "RateLimit" not in answers[0].headers


class TestTooManyRequests:
    async def test_is_a_problem_with_retry_after(self, probe_app: ProbeApp) -> None:
        async with (
            probe_app(rate_limit_anonymous_limit=2) as app,
            client(app, "198.51.100.5") as http,
        ):
            answers = [await http.get("/api/v1/_probe") for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        refused = answers[2]
        assert refused.headers["content-type"] == "application/problem+json"
        body = refused.json()
        assert body["type"] == "/problems/rate-limited"
        assert body["status"] == 429
        assert body["policy"] == "anonymous"
        retry_after = int(refused.headers["Retry-After"])
        assert 1 <= retry_after <= 120
        assert body["retry_after"] == retry_after
        assert refused.headers["X-RateLimit-Remaining"] == "0"
        assert refused.headers["RateLimit"].startswith('"anonymous";r=0;t=')
        assert refused.headers["RateLimit-Policy"] == '"anonymous";q=2;w=60'

    async def test_retry_after_is_when_a_request_passes_again(self, probe_app: ProbeApp) -> None:
        async with (
            probe_app(rate_limit_anonymous_limit=2, rate_limit_anonymous_window_s=1) as app,
            client(app, "198.51.100.6") as http,
        ):
            answers = [await http.get("/api/v1/_probe") for _ in range(3)]
            assert answers[2].status_code == 429
            wait = int(answers[2].headers["Retry-After"])
            assert 1 <= wait <= 2  # at most 1.5 windows for a limit of 2
            # Polled (refused requests are not counted): it passes again within `wait`.
            deadline = time.monotonic() + wait + 0.5
            while (await http.get("/api/v1/_probe")).status_code == 429:
                assert time.monotonic() < deadline, "still refused after Retry-After"
                await asyncio.sleep(0.1)

    async def test_rejected_requests_are_not_counted(self, probe_app: ProbeApp) -> None:
        async with (
            probe_app(rate_limit_anonymous_limit=1) as app,
            client(app, "198.51.100.7") as http,
        ):
            await http.get("/api/v1/_probe")
            first = await http.get("/api/v1/_probe")
            again = [await http.get("/api/v1/_probe") for _ in range(5)]
        assert all(a.status_code == 429 for a in [first, *again])
        assert int(again[-1].headers["Retry-After"]) <= int(first.headers["Retry-After"])


class TestClientAddress:
    async def test_spoofed_forwarded_for_from_untrusted_peer_is_ignored(
        self, probe_app: ProbeApp
    ) -> None:
        async with (
            probe_app(rate_limit_anonymous_limit=2) as app,
            client(app, "203.0.113.9") as http,
        ):
            codes = [
                (
                    await http.get("/api/v1/_probe", headers={"X-Forwarded-For": f"192.0.2.{i}"})
                ).status_code
                for i in range(4)
            ]
        assert codes == [200, 200, 429, 429]

    async def test_forwarded_for_from_trusted_proxy_is_the_client(
        self, probe_app: ProbeApp
    ) -> None:
        async with (
            probe_app(rate_limit_anonymous_limit=1, trusted_proxies="10.0.0.0/8") as app,
            client(app, "10.1.2.3") as http,
        ):

            async def get(xff: str) -> int:
                answer = await http.get("/api/v1/_probe", headers={"X-Forwarded-For": xff})
                return answer.status_code

            assert await get("192.0.2.10") == 200
            assert await get("192.0.2.10") == 429
            assert await get("192.0.2.11") == 200
            # The client can prepend anything; the right-most untrusted hop still decides.
            assert await get("192.0.2.99, 192.0.2.10") == 429
            assert await get("192.0.2.12, 10.9.9.9") == 200

    async def test_untrusted_peer_counts_under_its_own_address(self, probe_app: ProbeApp) -> None:
        async with probe_app(rate_limit_anonymous_limit=1, trusted_proxies="10.0.0.0/8") as app:
            async with client(app, "203.0.113.50") as a, client(app, "203.0.113.51") as b:
                spoof = {"X-Forwarded-For": "192.0.2.200"}
                assert (await a.get("/api/v1/_probe", headers=spoof)).status_code == 200
                assert (await b.get("/api/v1/_probe", headers=spoof)).status_code == 200


class TestProductCreation:
    async def test_one_per_window_for_anonymous_and_users(self, probe_app: ProbeApp) -> None:
        async with (
            probe_app(rate_limit_product_create_window_s=2) as app,
            client(app, "198.51.100.30") as http,
        ):
            answers = [await http.post("/api/v1/_probe/products") for _ in range(2)]
        assert [a.status_code for a in answers] == [200, 429]
        assert answers[1].json()["policy"] == "product_create"
        # Both policies applied are announced.
        assert answers[0].headers["RateLimit-Policy"] == (
            '"anonymous";q=60;w=60, "product_create";q=1;w=2'
        )
