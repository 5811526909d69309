"""Writes whose outcome is unknown: the connection to MongoDB is lost mid-insert.

A TCP proxy between the app and the server forwards the insert and drops its answer (the
readings are stored, the app cannot know), or drops the insert itself (nothing is stored).
Either way the readings end up stored exactly once, and a keyed retry stores nothing twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI

from app.core.config import Settings
from app.core.db import MongoDatabase
from tests.fixtures.app import client_for, running_app
from tests.fixtures.proxy import TcpProxy
from tests.fixtures.readings import MakeDevice, TestDevice

INSERT_READINGS = (b"insert", b"readings")
BATCH = {"readings": [{"metrics": {"temperature": float(t)}} for t in range(5)]}


@pytest.fixture
async def proxy(mongodb_url: str) -> AsyncIterator[TcpProxy]:
    if "," in (urlsplit(mongodb_url).netloc or "") or mongodb_url.startswith("mongodb+srv"):
        pytest.skip("the proxy fronts one server; MONGODB_URL names several")
    server = TcpProxy.for_url(mongodb_url)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def proxied_app(
    proxy: TcpProxy, make_settings: Callable[..., Settings]
) -> AsyncIterator[FastAPI]:
    settings = make_settings(
        mongodb_url=proxy.url,
        mongodb_timeout_ms=500,
        # A lost reply is noticed when the operation's budget runs out: keep it short.
        mongodb_operation_timeout_ms=2000,
        ingest_reconcile_timeout_s=1.0,
        idempotency_lease_s=2.0,
    )
    async with running_app(settings) as app:
        yield app


async def stored(mongo_db: MongoDatabase, device: TestDevice) -> list[float]:
    docs = mongo_db["readings"].find({"meta.device_id": device.id})
    return sorted([doc["m"]["temperature"] async for doc in docs])


def post(http: httpx.AsyncClient, device: TestDevice, key: str | None = None) -> object:
    headers = dict(device.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    return http.post(f"/api/v1/devices/{device.id}/readings", json=BATCH, headers=headers)


EXPECTED = [float(t) for t in range(5)]


class TestReplyLost:
    async def test_stored_once_and_answered(
        self,
        proxied_app: FastAPI,
        proxy: TcpProxy,
        make_device: MakeDevice,
        mongo_db: MongoDatabase,
    ) -> None:
        device = await make_device()
        proxy.lose_reply_to(*INSERT_READINGS)
        async with client_for(proxied_app) as http:
            resp = await post(http, device)  # type: ignore[misc]
        assert proxy.cuts_done == 1
        assert resp.status_code == 202, resp.text
        assert resp.json()["accepted"] == 5
        assert await stored(mongo_db, device) == EXPECTED  # not twice

    async def test_request_lost_is_stored_by_the_reconciliation(
        self,
        proxied_app: FastAPI,
        proxy: TcpProxy,
        make_device: MakeDevice,
        mongo_db: MongoDatabase,
    ) -> None:
        device = await make_device()
        proxy.drop_request_of(*INSERT_READINGS)
        async with client_for(proxied_app) as http:
            resp = await post(http, device, key="lost-1")  # type: ignore[misc]
            assert proxy.cuts_done == 1
            assert resp.status_code == 202, resp.text
            assert await stored(mongo_db, device) == EXPECTED
            again = await post(http, device, key="lost-1")  # type: ignore[misc]
        assert again.status_code == 202
        assert again.json() == resp.json()
        assert await stored(mongo_db, device) == EXPECTED


class TestDatabaseStaysAway:
    async def test_503_keeps_the_key_and_the_retry_stores_only_the_missing(
        self,
        proxied_app: FastAPI,
        proxy: TcpProxy,
        make_device: MakeDevice,
        mongo_db: MongoDatabase,
    ) -> None:
        device = await make_device()
        # The insert reaches the server, then the database is away past the reconcile time.
        proxy.lose_reply_to(*INSERT_READINGS, then_refuse=True)
        async with client_for(proxied_app) as http:
            resp = await post(http, device, key="away-1")  # type: ignore[misc]
            assert resp.status_code == 503, resp.text
            assert resp.headers["content-type"] == "application/problem+json"
            assert resp.json()["type"].endswith("/ingest-outcome-unknown")
            assert await stored(mongo_db, device) == EXPECTED  # the server had applied it
            proxy.refuse = False
            # The key could not be handed on while the database was away: retries wait for
            # its lease (IDEMPOTENCY_LEASE_S), then one takes it over.
            deadline = time.monotonic() + 10
            while (retry := await post(http, device, key="away-1")).status_code == 409:  # type: ignore[misc]
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
        assert retry.status_code == 202, retry.text
        assert retry.json()["accepted"] == 5
        assert await stored(mongo_db, device) == EXPECTED  # the retry stored nothing twice
