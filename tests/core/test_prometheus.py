"""GET /metrics: the series, bounded labels, protection, and figures from the worker side."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from bson import ObjectId
from celery import Celery
from fastapi import FastAPI

from app.core.config import Settings
from app.core.models import utcnow
from app.core.prometheus import UNMATCHED_ROUTE
from tests.fixtures.worker import eventually

SERIES = (
    "sensorhub_http_requests_total",
    "sensorhub_http_request_duration_seconds",
    "sensorhub_readings_ingested_total",
    "sensorhub_ingest_flush_readings",
    "sensorhub_rate_limit_rejections_total",
    "sensorhub_rate_limit_fallbacks_total",
    "sensorhub_email_outbox",
    "sensorhub_celery_tasks_total",
)


def samples(text: str, name: str) -> dict[str, float]:
    """Samples of one series: label string -> value."""
    found = {}
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}(\{{.*\}})? (\S+)$", line)
        if m:
            found[m.group(1) or ""] = float(m.group(2))
    return found


def client_from(app: FastAPI, host: str, **kwargs: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(host, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", **kwargs)


@pytest.fixture
async def probe_app(
    app_with: Callable[[Settings], Any], make_settings: Callable[..., Settings]
) -> AsyncIterator[FastAPI]:
    """An app with a templated route, and a metrics token."""
    settings = make_settings(metrics_token="m" * 32)
    async with app_with(settings) as app:

        async def device_probe(device_id: str) -> dict[str, str]:
            return {"id": device_id}

        app.add_api_route("/api/v1/probe/{device_id}", device_probe, response_model=None)
        yield app


class TestSeries:
    async def test_every_series_is_exposed(self, client: httpx.AsyncClient) -> None:
        await client.get("/health")
        response = await client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        for name in SERIES:
            assert f"# TYPE {name.removesuffix('_total')}" in response.text, name
        assert 'route="/health"' in response.text

    async def test_outbox_sizes_by_status_come_from_mongodb(
        self, client: httpx.AsyncClient, mongo_db: Any
    ) -> None:
        before = samples((await client.get("/metrics")).text, "sensorhub_email_outbox")
        await mongo_db.email_outbox.insert_many(
            [
                {
                    "to": "z@example.com",
                    "template": "welcome",
                    "status": "failed",
                    "attempts": 5,
                    "created_at": utcnow(),
                    "updated_at": utcnow(),
                    "dedupe_key": str(ObjectId()),
                }
                for _ in range(3)
            ]
        )
        after = samples((await client.get("/metrics")).text, "sensorhub_email_outbox")
        key = '{status="failed"}'
        assert after[key] == before[key] + 3
        assert set(after) >= {f'{{status="{s}"}}' for s in ("pending", "sending", "sent")}

    async def test_celery_outcomes_counted_by_the_worker(
        self, client: httpx.AsyncClient, worker_celery: Celery
    ) -> None:
        def count(text: str) -> float:
            key = '{outcome="success",task="cleanup.sessions"}'
            return samples(text, "sensorhub_celery_tasks_total").get(key, 0.0)

        before = count((await client.get("/metrics")).text)
        worker_celery.send_task("cleanup.sessions")

        async def counted() -> bool:
            return count((await client.get("/metrics")).text) == before + 1

        await eventually(counted, what="the worker's task outcome")


class TestRouteLabels:
    async def test_templates_not_raw_paths_and_series_do_not_grow(self, probe_app: FastAPI) -> None:
        async with client_from(probe_app, "127.0.0.1") as http:

            async def series_count() -> int:
                text = (await http.get("/metrics")).text
                return len(samples(text, "sensorhub_http_requests_total")) + len(
                    samples(text, "sensorhub_http_request_duration_seconds_count")
                )

            for _ in range(2):
                await http.get(f"/api/v1/probe/{ObjectId()}")
                await http.get(f"/api/v1/nothing/{ObjectId()}")
            # /metrics counts itself after answering: its own series appear with the second call
            # when no earlier test of this process asked for it.
            await series_count()
            baseline = await series_count()
            ids = [str(ObjectId()) for _ in range(100)]
            for device_id in ids:
                assert (await http.get(f"/api/v1/probe/{device_id}")).status_code == 200
                assert (await http.get(f"/api/v1/nothing/{device_id}")).status_code == 404
            assert await series_count() == baseline
            text = (await http.get("/metrics")).text
        assert ids[0] not in text
        assert 'route="/api/v1/probe/{device_id}",status="200"' in text
        assert f'route="{UNMATCHED_ROUTE}",status="404"' in text


class TestProtection:
    async def test_loopback_needs_no_token(self, probe_app: FastAPI) -> None:
        for host in ("127.0.0.1", "::1"):
            async with client_from(probe_app, host) as http:
                assert (await http.get("/metrics")).status_code == 200

    async def test_other_hosts_need_the_token(self, probe_app: FastAPI) -> None:
        async with client_from(probe_app, "203.0.113.9") as http:
            missing = await http.get("/metrics")
            wrong = await http.get("/metrics", headers={"Authorization": "Bearer nope"})
            right = await http.get("/metrics", headers={"Authorization": "Bearer " + "m" * 32})
        assert (missing.status_code, wrong.status_code, right.status_code) == (403, 403, 200)
        assert missing.headers["content-type"] == "application/problem+json"
        assert "sensorhub_http_requests_total" in right.text

    async def test_disabled_for_other_hosts_without_a_token(self, app: FastAPI) -> None:
        async with client_from(app, "203.0.113.9") as http:
            response = await http.get("/metrics", headers={"Authorization": "Bearer x"})
        assert response.status_code == 404
        assert "sensorhub_" not in response.text
