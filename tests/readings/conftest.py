"""Fixtures of the readings tests: device and product documents as the catalog stores them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from bson import ObjectId
from fastapi import FastAPI
from odmantic import AIOEngine

from app.auth import device_keys
from app.core.db import MongoDatabase
from app.core.models import utcnow
from app.core.services import services_of
from app.readings.batcher import IngestBatcher
from app.readings.context import DeviceContext
from app.readings.context import load as load_device_context

MakeDevice = Callable[..., Awaitable["TestDevice"]]


class TestDevice:
    """A stored device, its product, its key and its ingest context."""

    __test__ = False

    def __init__(self, *, context: DeviceContext, key: str) -> None:
        self.context = context
        self.key = key

    @property
    def id(self) -> str:
        """The device id (hex)."""
        return self.context.device_id

    @property
    def headers(self) -> dict[str, str]:
        """Device authentication headers."""
        return {"X-Device-Key": self.key}


@pytest.fixture
def batcher(app: FastAPI) -> IngestBatcher:
    """The shared app's group-commit batcher."""
    batcher: IngestBatcher = services_of(app).batcher
    return batcher


@pytest.fixture
def make_device(mongo_db: MongoDatabase, engine: AIOEngine) -> MakeDevice:
    """Insert a product with a telemetry schema and one device of it."""

    async def make(
        *,
        metrics: list[dict[str, Any]] | None = None,
        allow_unknown: bool = True,
        ingest_limit_per_minute: int | None = None,
        presence: dict[str, Any] | None = None,
    ) -> TestDevice:
        now = utcnow()
        product_id = ObjectId()
        await mongo_db["products"].insert_one(
            {
                "_id": product_id,
                "name": "Thermo",
                "sku": f"SKU-{product_id}",
                "folder_id": None,
                "telemetry": {
                    "metrics": metrics
                    if metrics is not None
                    else [
                        {"name": "temperature", "unit": "C", "min": -40, "max": 85},
                        {"name": "humidity", "unit": "%", "min": 0, "max": 100},
                    ],
                    "allow_unknown": allow_unknown,
                    "ingest_limit_per_minute": ingest_limit_per_minute,
                },
                "created_at": now,
                "updated_at": now,
            }
        )
        key = device_keys.generate()
        device_id = ObjectId()
        await mongo_db["devices"].insert_one(
            {
                "_id": device_id,
                "name": f"dev-{device_id}",
                "name_key": f"dev-{device_id}",
                "serial": f"SN-{device_id}",
                "product_id": str(product_id),
                "folder_id": None,
                "folder_path": [],
                "key_hash": key.key_hash,
                "key_prefix": key.key_prefix,
                "location": None,
                "metadata": {},
                "created_at": now,
                "updated_at": now,
                "presence": presence,
                "created_by": "tests",
            }
        )
        context = await load_device_context(engine, str(device_id))
        assert context is not None
        return TestDevice(context=context, key=key.key)

    return make


@asynccontextmanager
async def running_batcher(
    engine: AIOEngine, *, flush_interval_s: float = 0, max_docs: int = 100
) -> AsyncIterator[IngestBatcher]:
    """A batcher of the test's own, started and always stopped (flushing what it holds)."""
    batcher = IngestBatcher(
        engine, flush_interval_s=flush_interval_s, max_docs=max_docs, presence_throttle_s=30
    )
    batcher.start()
    try:
        yield batcher
    finally:
        await batcher.stop()
