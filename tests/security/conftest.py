"""Fixtures of the attack tests: an app of their own with small limits, and clients that
call it from a chosen client address."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.core.config import Settings
from tests.fixtures.app import running_app

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
