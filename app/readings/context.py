"""What ingest and reads need to know about a device, and a short-lived cache of it.

A `DeviceContext` is the device's product id, its product's telemetry schema and its last
presence, read from the catalog's documents (two small reads by `_id`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from odmantic import AIOEngine
from pydantic import ValidationError

from app.catalog.models import Device, Product
from app.catalog.telemetry import TelemetrySchema
from app.core import db
from app.core.models import parse_object_id
from app.readings import repository

logger = logging.getLogger(__name__)

Doc = dict[str, Any]


@dataclass(frozen=True, slots=True)
class DeviceContext:
    """What ingest needs to know about a device: its product's schema and its presence."""

    device_id: str
    product_id: str
    telemetry: TelemetrySchema
    presence: Doc | None
    # Stored keys of the metric names the device has sent (bounded per device).
    known_metrics: frozenset[str] = frozenset()


async def load(engine: AIOEngine, device_id: str) -> DeviceContext | None:
    """The device and its product's telemetry schema, or None when the device does not exist."""
    oid = parse_object_id(device_id)
    if oid is None:
        return None
    device = await db.collection(engine, Device).find_one(
        {"_id": oid}, {"product_id": 1, "presence": 1}
    )
    if device is None:
        return None
    product_id = str(device.get("product_id") or "")
    telemetry = TelemetrySchema()
    product_oid = parse_object_id(product_id)
    product = None
    if product_oid is not None:
        product = await db.collection(engine, Product).find_one(
            {"_id": product_oid}, {"telemetry": 1}
        )
    if product is None:
        logger.warning("device without product", extra={"device_id": device_id})
    elif product.get("telemetry"):
        try:
            telemetry = TelemetrySchema.model_validate(product["telemetry"])
        except ValidationError:
            logger.warning("invalid telemetry schema", extra={"product_id": product_id})
    return DeviceContext(
        device_id=device_id,
        product_id=product_id,
        telemetry=telemetry,
        presence=device.get("presence"),
        known_metrics=await repository.known_metrics(engine, device_id),
    )


class DeviceContextCache:
    """Device contexts kept for a few seconds, so ingest reads no device or product per request.

    A cache only: schema changes apply within `ttl_s`; key checks are not cached here.
    """

    MAX_ENTRIES = 100_000

    def __init__(self, *, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[float, DeviceContext]] = {}

    async def get(self, engine: AIOEngine, device_id: str) -> DeviceContext | None:
        """The cached context, or a fresh one."""
        now = time.monotonic()
        entry = self._entries.get(device_id)
        if entry is not None and entry[0] > now:
            return entry[1]
        context = await load(engine, device_id)
        if context is not None and self.ttl_s > 0:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
            self._entries[device_id] = (now + self.ttl_s, context)
        return context

    def note_presence(self, device_id: str, presence: Doc) -> None:
        """Remember the presence just written, so the next conditional write expects it."""
        entry = self._entries.get(device_id)
        if entry is not None:
            self._entries[device_id] = (entry[0], replace(entry[1], presence=presence))

    def note_metrics(self, device_id: str, known: frozenset[str]) -> None:
        """Remember the device's metric registry just read or written."""
        entry = self._entries.get(device_id)
        if entry is not None:
            self._entries[device_id] = (entry[0], replace(entry[1], known_metrics=known))

    def forget(self, device_id: str) -> None:
        """Drop a device's context (after a heartbeat changed its presence)."""
        self._entries.pop(device_id, None)
