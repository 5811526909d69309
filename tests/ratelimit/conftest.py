"""Fixtures of the rate-limiting tests: both stores, a limiter per test, a probe app."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
import redis
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import PlainTextResponse

from app.api import api_router
from app.auth.quotas import RateLimit
from app.core.config import Settings
from app.core.routing import API_PREFIX
from app.main import create_app
from app.ratelimit.backends import Backend, RedisBackend, UpstashBackend
from app.ratelimit.fallback import CircuitBreaker
from app.ratelimit.service import RateLimiter
from tests.fixtures.servers import ManagedProcess
from tests.fixtures.upstash import UpstashRestServer


@pytest.fixture(scope="session")
def upstash_server(redis_server: ManagedProcess) -> Iterator[UpstashRestServer]:
    """The Upstash REST stand-in, forwarding to the session redis-server."""
    server = UpstashRestServer(redis_port=redis_server.port)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_sync(redis_server: ManagedProcess) -> Iterator[redis.Redis]:
    """A plain client to look at what the limiter stored."""
    client = redis.Redis(port=redis_server.port)
    yield client
    client.close()


# These backends' tests are about counting; a store that misses its deadline is
# tests/ratelimit/test_fallback.py's subject. On a loaded machine the in-process Upstash
# stand-in (one thread per connection, sharing the test's GIL) took over 2 s to answer 240
# concurrent checks, and the limiter rightly decided the rest locally.
STORE_S = 10.0


@pytest.fixture(params=["redis", "upstash"])
def make_backend(
    request: pytest.FixtureRequest, redis_server: ManagedProcess
) -> Iterator[Callable[[], Backend]]:
    """Backends of one kind (each call a separate client); both kinds run every test."""

    def build() -> Backend:
        backend: Backend
        if request.param == "redis":
            backend = RedisBackend(f"redis://127.0.0.1:{redis_server.port}/0", timeout_s=STORE_S)
        else:
            server: UpstashRestServer = request.getfixturevalue("upstash_server")
            backend = UpstashBackend(server.url, server.token, timeout_s=STORE_S)
        return backend

    # Each backend is closed by the limiter that owns it.
    return build


@pytest.fixture
async def make_limiter(
    make_backend: Callable[[], Backend],
) -> AsyncIterator[Callable[..., RateLimiter]]:
    """Limiters on separate clients sharing one fresh key prefix."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    made: list[RateLimiter] = []

    def build() -> RateLimiter:
        limiter = RateLimiter(
            make_backend(),
            prefix=prefix,
            breaker=CircuitBreaker(failure_threshold=1, cooldown_s=60),
        )
        made.append(limiter)
        return limiter

    yield build
    for limiter in made:
        await limiter.aclose()


@pytest.fixture
def limiter(make_limiter: Callable[..., RateLimiter]) -> RateLimiter:
    """One limiter on a fresh key prefix."""
    return make_limiter()


# The shipped limits (the shared test settings raise them out of other tests' way).
DEFAULT_LIMITS: dict[str, object] = {
    name: Settings.model_fields[name].default
    for name in (
        "rate_limit_anonymous_limit",
        "rate_limit_user_limit",
        "rate_limit_admin_limit",
        "rate_limit_device_limit",
    )
}


def probe_router() -> APIRouter:
    """Test routes mounted with exactly the dependencies of the real `api_router`."""
    outer = APIRouter(prefix=API_PREFIX, dependencies=list(api_router.dependencies))
    inner = APIRouter(prefix="/_probe")

    @inner.get("", response_model=dict[str, str])
    async def probe() -> dict[str, str]:
        return {"status": "ok"}

    @inner.get("/raw", response_class=PlainTextResponse, response_model=None)
    async def raw() -> PlainTextResponse:
        return PlainTextResponse("raw")

    @inner.post(
        "/products",
        response_model=dict[str, str],
        dependencies=[Depends(RateLimit("product_create"))],
    )
    async def create_product() -> dict[str, str]:
        return {"status": "created"}

    outer.include_router(inner)
    return outer


@pytest.fixture
def probe_app(
    make_settings: Callable[..., Settings],
) -> Callable[..., AbstractAsyncContextManager[FastAPI]]:
    """`async with probe_app(**settings) as app:` the real app plus the probe routes."""

    @asynccontextmanager
    async def run(**overrides: object) -> AsyncIterator[FastAPI]:
        overrides = {**DEFAULT_LIMITS, **overrides}
        overrides.setdefault("rate_limit_key_prefix", f"t{uuid.uuid4().hex[:10]}")
        app = create_app(make_settings(**overrides))
        app.include_router(probe_router())
        async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30):
            yield app

    return run
