"""Fixtures of the readings tests: a device with its product, key and ingest context."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from odmantic import AIOEngine

from app.catalog.telemetry import TelemetrySchema
from app.core.services import services_of
from app.readings.batcher import FlushListener, IngestBatcher
from app.readings.context import DeviceContext
from app.readings.context import load as load_device_context
from tests.fixtures.catalog import MASTER, new_device, new_product

MakeDevice = Callable[..., Awaitable["TestDevice"]]
DEFAULT_METRICS = [
    {"name": "temperature", "unit": "C", "min": -40, "max": 85},
    {"name": "humidity", "unit": "%", "min": 0, "max": 100},
]


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
def make_device(engine: AIOEngine) -> MakeDevice:
    """A product with a telemetry schema and one device of it (owned by no user)."""

    async def make(
        *,
        metrics: list[dict[str, Any]] | None = None,
        allow_unknown: bool = True,
        ingest_limit_per_minute: int | None = None,
        presence: dict[str, Any] | None = None,
    ) -> TestDevice:
        telemetry = TelemetrySchema.model_validate(
            {
                "metrics": DEFAULT_METRICS if metrics is None else metrics,
                "allow_unknown": allow_unknown,
                "ingest_limit_per_minute": ingest_limit_per_minute,
            }
        )
        product = await new_product(engine, owner=MASTER, telemetry=telemetry)
        device, key = await new_device(engine, owner=MASTER, product=product, presence=presence)
        context = await load_device_context(engine, str(device.id))
        assert context is not None
        return TestDevice(context=context, key=key)

    return make


@asynccontextmanager
async def running_batcher(
    engine: AIOEngine,
    *,
    flush_interval_s: float = 0,
    max_docs: int = 100,
    listeners: Sequence[FlushListener] = (),
) -> AsyncIterator[IngestBatcher]:
    """A batcher of the test's own, started and always stopped (flushing what it holds)."""
    batcher = IngestBatcher(
        engine,
        flush_interval_s=flush_interval_s,
        max_docs=max_docs,
        presence_throttle_s=30,
        listeners=listeners,
    )
    batcher.start()
    try:
        yield batcher
    finally:
        await batcher.stop()
