"""Session fixtures: real servers on free ports, the app, HTTP clients.

With `MONGODB_URL` set, the suite uses that MongoDB instead of starting the embedded server;
each run works in its own database either way.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from odmantic import AIOEngine

from app.auth.key_cache import DeviceKeyCache
from app.core.config import Settings
from app.core.db import MongoDatabase, database
from app.core.services import services_of
from app.main import create_app
from tests.fixtures.identities import (  # noqa: F401 - fixtures
    TEST_JWT_SECRET,
    TEST_MASTER_TOKEN,
    api_session,
    emulator_rest,
    make_user,
    master_headers,
)
from tests.fixtures.services import (
    ManagedProcess,
    SentryEndpoint,
    SmtpSink,
    free_port,
    make_workdir,
    port_open,
    start_firebase_emulator,
    start_mongodb,
    start_redis,
    wait_until,
)

FIREBASE_PROJECT_ID = "demo-sensorhub"


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    """Scratch space for server data and logs; removed after the run."""
    path = make_workdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def mongodb_url(workdir: Path) -> Iterator[str]:
    """`MONGODB_URL` when set (a real MongoDB), else a fresh embedded server."""
    external = os.environ.get("MONGODB_URL")
    if external:
        yield external
        return
    server = start_mongodb(workdir)
    yield f"mongodb://127.0.0.1:{server.port}"
    server.stop()


@pytest.fixture(scope="session")
def redis_server(workdir: Path) -> Iterator[ManagedProcess]:
    """A redis-server for the whole run."""
    server = start_redis(workdir)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def firebase_emulator(workdir: Path) -> Iterator[ManagedProcess]:
    """The Firebase Auth emulator, started once per run when a test needs it."""
    server = start_firebase_emulator(workdir, FIREBASE_PROJECT_ID)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[SmtpSink]:
    """An aiosmtpd server that records every message."""
    sink = SmtpSink(port=free_port())
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def sentry_endpoint() -> Iterator[SentryEndpoint]:
    """A local HTTP endpoint used as Sentry DSN; it records the envelopes."""
    endpoint = SentryEndpoint()
    endpoint.start()
    yield endpoint
    endpoint.stop()


@pytest.fixture(scope="session")
def db_name() -> str:
    """One database per test run."""
    return f"sensorhub_test_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def make_settings(
    mongodb_url: str,
    redis_server: ManagedProcess,
    db_name: str,
    firebase_emulator: ManagedProcess,
) -> Callable[..., Settings]:
    """Build test settings pointing at the real servers, with overrides."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "environment": "test",
            "mongodb_url": mongodb_url,
            "mongodb_db": db_name,
            "redis_url": f"redis://127.0.0.1:{redis_server.port}/0",
            "log_json": False,
            "startup_retry_attempts": 3,
            "startup_retry_max_wait_s": 0.5,
            "ready_timeout_s": 1.0,
            "mongodb_timeout_ms": 2000,
            "firebase_project_id": FIREBASE_PROJECT_ID,
            "firebase_auth_emulator_host": f"127.0.0.1:{firebase_emulator.port}",
            "jwt_secret": TEST_JWT_SECRET,
            "master_token": TEST_MASTER_TOKEN,
            # Every test calls from 127.0.0.1: keep the limiter on, but out of other tests'
            # way; tests/ratelimit sets small limits on apps of their own.
            "rate_limit_anonymous_limit": 1_000_000,
            "rate_limit_user_limit": 1_000_000,
            "rate_limit_admin_limit": 1_000_000,
            "rate_limit_device_limit": 1_000_000,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return build


@pytest.fixture(scope="session")
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """The settings of the shared test app."""
    return make_settings()


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """An app with its lifespan entered (clients connected, schema created)."""
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30):
        yield app


def client_for(app: FastAPI) -> httpx.AsyncClient:
    """An httpx client that calls the ASGI app in-process; server errors become responses."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The shared app for the run."""
    async with running_app(settings) as app:
        yield app
        # Leave nothing behind on a shared (real) MongoDB.
        await services_of(app).mongo_client.drop_database(settings.mongodb_db)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the shared app."""
    async with client_for(app) as http:
        yield http


@pytest.fixture
def mongo_db(app: FastAPI) -> MongoDatabase:
    """The raw database of the shared app, for assertions on what was stored."""
    return database(services_of(app).engine)


@pytest.fixture
def engine(app: FastAPI) -> AIOEngine:
    """The shared app's ODMantic engine, for service-level tests."""
    engine: AIOEngine = services_of(app).engine
    return engine


@pytest.fixture
def key_cache(app: FastAPI) -> DeviceKeyCache:
    """The shared app's device-key cache (services revoke keys through it)."""
    cache: DeviceKeyCache = services_of(app).device_keys
    return cache


@pytest.fixture
def app_with() -> Callable[[Settings], AbstractAsyncContextManager[FastAPI]]:
    """Start a separate app with its own settings: `async with app_with(settings) as app:`."""
    return running_app


@pytest.fixture(scope="session")
def live_server(settings: Settings) -> Iterator[str]:
    """A real uvicorn server on a free port (for tests that need a socket); yields its URL."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_config=None, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    wait_until(lambda: server.started and port_open(port), timeout=30, what="uvicorn")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


from tests.fixtures.worker import celery_worker, worker_celery, worker_settings  # noqa: E402

__all__ = ["celery_worker", "worker_celery", "worker_settings"]
