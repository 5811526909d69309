"""Liveness, readiness (and its recovery), and the API docs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from app import __version__
from app.core.config import Settings
from app.core.middleware import RequestMiddleware
from tests.fixtures.app import client_for
from tests.fixtures.servers import start_mongodb, start_redis

AppFactory = Callable[[Settings], AbstractAsyncContextManager[FastAPI]]


async def wait_for_status(client: httpx.AsyncClient, path: str, status: int) -> httpx.Response:
    """Poll `path` until it answers `status` (readiness follows the server within seconds)."""
    for _ in range(50):
        response = await client.get(path)
        if response.status_code == status:
            return response
        await asyncio.sleep(0.2)
    raise AssertionError(f"{path} never answered {status}; last: {response.status_code}")


class TestProbes:
    async def test_health(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health")
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "version": __version__}

    async def test_ready_when_both_answer(self, client: httpx.AsyncClient) -> None:
        # The live feed subscribes in the background just after start-up.
        response = await wait_for_status(client, "/ready", 200)
        assert response.json()["checks"] == {"mongodb": "ok", "redis": "ok", "live": "ok"}


class TestReadinessFollowsRedis:
    async def test_redis_down_then_back(
        self, make_settings: Callable[..., Settings], app_with: AppFactory, workdir: Path
    ) -> None:
        redis = start_redis(workdir)
        settings = make_settings(redis_url=f"redis://127.0.0.1:{redis.port}/0")
        try:
            async with app_with(settings) as app, client_for(app) as client:
                await wait_for_status(client, "/ready", 200)
                redis.stop()
                response = await wait_for_status(client, "/ready", 503)
                body = response.json()
                assert response.headers["content-type"] == "application/problem+json"
                # The live feed notices on its own schedule (its next ping).
                assert body["checks"]["mongodb"] == "ok"
                assert body["checks"]["redis"] == "unavailable"
                assert "redis" in body["detail"]
                assert (await client.get("/health")).status_code == 200
                redis = start_redis(workdir, port=redis.port)
                await wait_for_status(client, "/ready", 200)
        finally:
            redis.stop()


class TestReadinessFollowsMongo:
    async def test_mongodb_down_then_back(
        self, make_settings: Callable[..., Settings], app_with: AppFactory, workdir: Path
    ) -> None:
        mongo = start_mongodb(workdir / "own-mongo")
        port = mongo.port
        settings = make_settings(mongodb_url=f"mongodb://127.0.0.1:{port}", mongodb_timeout_ms=500)
        try:
            async with app_with(settings) as app, client_for(app) as client:
                await wait_for_status(client, "/ready", 200)
                mongo.stop()
                response = await wait_for_status(client, "/ready", 503)
                checks = response.json()["checks"]
                assert checks == {"mongodb": "unavailable", "redis": "ok", "live": "ok"}
                mongo.start()
                await wait_for_status(client, "/ready", 200)
        finally:
            mongo.stop()


class TestDocs:
    async def test_openapi_has_title_version_description(self, client: httpx.AsyncClient) -> None:
        info = (await client.get("/openapi.json")).json()["info"]
        assert info["title"] == "Sensorhub"
        assert info["version"] == __version__
        assert "devices" in info["description"]

    async def test_docs_pages_are_served(self, client: httpx.AsyncClient) -> None:
        for path in ("/docs", "/redoc"):
            response = await client.get(path)
            assert response.status_code == 200
            assert "text/html" in response.headers["content-type"]


class TestRequestId:
    async def test_generated_and_echoed(self, client: httpx.AsyncClient) -> None:
        first = (await client.get("/health")).headers["x-request-id"]
        second = (await client.get("/health")).headers["x-request-id"]
        assert first != second
        assert len(first) == 32

    async def test_callers_safe_id_is_kept(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health", headers={"X-Request-ID": "abc-123.x"})
        assert response.headers["x-request-id"] == "abc-123.x"

    async def test_unsafe_id_is_replaced(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health", headers={"X-Request-ID": "bad id\t<script>"})
        assert response.headers["x-request-id"] != "bad id\t<script>"


class TestAccessLogSampling:
    async def _logged(self, rate: float, paths: list[str]) -> list[int]:
        """Statuses of the access-log records written for GETs of `paths`."""

        async def app(scope: Any, receive: Any, send: Any) -> None:
            status = 200 if scope["path"] == "/ok" else 404
            await send({"type": "http.response.start", "status": status, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        records: list[logging.LogRecord] = []
        handler = logging.Handler()
        handler.emit = records.append  # type: ignore[method-assign]
        logger = logging.getLogger("app.access")
        logger.addHandler(handler)
        level = logger.level
        logger.setLevel(logging.INFO)
        try:
            wrapped = RequestMiddleware(app, max_body_bytes=1024, access_log_sample_rate=rate)
            transport = httpx.ASGITransport(app=wrapped)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                for path in paths:
                    await http.get(path)
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
        return [r.status for r in records]  # type: ignore[attr-defined]

    async def test_every_request_by_default(self) -> None:
        assert await self._logged(1.0, ["/ok", "/ok", "/missing"]) == [200, 200, 404]

    async def test_errors_always_successes_sampled(self) -> None:
        assert await self._logged(0.0, ["/ok", "/missing", "/ok"]) == [404]
