"""Fixtures of the security tests: an app of their own with small limits, clients that
call it from a chosen client address, and a second API process (`process_b`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.core.config import Settings
from tests.fixtures.app import running_app
from tests.fixtures.servers import ManagedProcess, local_http
from tests.live.conftest import Api, start_api

HardenedApp = Callable[..., AbstractAsyncContextManager[FastAPI]]


def client_from(app: FastAPI, address: str = "198.51.100.7") -> httpx.AsyncClient:
    """An HTTP client on `app` whose requests come from `address`."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
def hardened_app(make_settings: Callable[..., Settings]) -> HardenedApp:
    """`async with hardened_app(**settings) as app:` the real app with the given settings."""

    @asynccontextmanager
    async def run(**overrides: Any) -> AsyncIterator[FastAPI]:
        async with running_app(make_settings(**overrides)) as app:
            yield app

    return run


@pytest.fixture(scope="module")
def process_b(
    request: pytest.FixtureRequest,
    settings: Settings,
    workdir: Path,
    redis_server: ManagedProcess,
) -> Iterator[Api]:
    """A second API process of the deployment (uvicorn, in a process of its own) on the same
    MongoDB and Redis; it follows every change feed from its start. A test module may give it
    settings of its own in `PROCESS_B_ENV`."""
    module = request.module.__name__.rsplit(".", 1)[-1]
    env: dict[str, str] = getattr(request.module, "PROCESS_B_ENV", {})
    redis_url = f"redis://127.0.0.1:{redis_server.port}/0"
    api = start_api(settings, workdir, redis_url, f"api-b-{module}", **env)
    yield api
    api.proc.stop()


@pytest.fixture
async def there(process_b: Api) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on process B."""
    async with local_http(process_b.url, timeout=10) as http:
        yield http
