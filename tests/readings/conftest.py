"""Fixtures of the readings tests: an app that serves every request through the router."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from app.core.config import Settings
from app.core.middleware import RequestMiddleware
from app.main import create_app
from tests.fixtures.app import client_for


@pytest.fixture(scope="module")
async def routed_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """An app like the shared one (same servers and database), but without the fast routes:
    every request goes through FastAPI and the documented route."""
    app = create_app(settings)
    patched = 0
    for middleware in app.user_middleware:
        if middleware.cls is RequestMiddleware and middleware.kwargs.get("fast_routes"):
            middleware.kwargs["fast_routes"] = ()
            patched += 1
    assert patched == 1
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30):
        yield app


@pytest.fixture
async def routed(routed_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client on `routed_app`."""
    async with client_for(routed_app) as http:
        yield http
