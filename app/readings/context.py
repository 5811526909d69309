"""What ingest and reads need to know about a device, and a cache of it kept exact over Redis.

A `DeviceContext` is the device's product id, its product's telemetry schema, its last
presence and the metric names it has registered: three small reads by `_id` (device, product,
`device_latest`). A device posting once a minute would pay them on every request under a
short TTL, so `DeviceContextCache` keeps a context until what it holds changes, the way the
device-key cache does (`app.core.feed_cache`):

* changing a product's telemetry schema or deleting the product, and moving a device to
  another product or deleting it, are announced (after the database write) on
  `sensorhub:device-contexts:changed`; every API process follows the channel and forgets the
  contexts of that product or device milliseconds later, the announcing one before it answers;
* while a process does not follow the channel (Redis down, reconnecting), it reads every
  context from MongoDB, and starts empty when subscribed again; a read racing an
  announcement is not kept (generation);
* entries expire `READINGS_CONTEXT_CACHE_S` (300 s) after their read whatever happens, which
  bounds a change nobody announced (an edit by hand, an announcement Redis refused), and at
  most `READINGS_CONTEXT_CACHE_MAX` are kept (least recently used go first).

Presence and known metrics are not announced: another process's writes may leave them stale,
but each feeds only a conditional write that fails on a stale value and reads again
(`app.readings.batcher` for presence, `repository.register_metrics` for metric names, whose
registry only grows while the device exists), so a stale copy costs a read, never a wrong
presence or a device past its metric cap.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from odmantic import AIOEngine
from pydantic import ValidationError

from app.catalog.models import Device, Product
from app.catalog.telemetry import TelemetrySchema
from app.core import db
from app.core.feed_cache import FeedCache
from app.core.models import parse_object_id
from app.readings import repository

logger = logging.getLogger(__name__)

Doc = dict[str, Any]

CHANNEL = "sensorhub:device-contexts:changed"


def device_tag(device_id: str) -> str:
    """The tag of a device's cached context."""
    return f"device:{device_id}"


def product_tag(product_id: str) -> str:
    """The tag carried by the cached context of every device of a product."""
    return f"product:{product_id}"


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


@dataclass(slots=True)
class _Slot:
    """A cached context; presence and metric notes replace it in place, so a note never
    renews the entry's age (the TTL stays a bound from the database read)."""

    context: DeviceContext


class DeviceContextCache(FeedCache[str, _Slot]):
    """Device contexts kept until what they hold changes, so ingest reads no device, product
    or metric registry per request (see the module).

    Each entry carries its device's and its product's tags: a schema change, a deleted product,
    or a device deleted or moved to another product is announced, and every process forgets
    the contexts concerned. Presence and known metrics may lag another process's writes: the
    writes they feed are conditional, so a stale value is caught and read again there.
    """

    channel = CHANNEL
    lost_warning = f"{CHANNEL} feed lost; reading each device's context from MongoDB"
    what = "a device's previous product or telemetry schema"

    async def context(self, engine: AIOEngine, device_id: str) -> DeviceContext | None:
        """The cached context, or a fresh one (kept when nothing was announced meanwhile)."""
        slot = self.get(device_id)
        if slot is not None:
            return slot.context
        generation = self.generation
        context = await load(engine, device_id)
        if context is not None:
            tags = (device_tag(device_id), product_tag(context.product_id))
            self.put(device_id, _Slot(context), tags=tags, generation=generation)
        return context

    def note_presence(self, device_id: str, presence: Doc | None) -> None:
        """Remember the presence just written or read, so the next conditional write expects it."""
        slot = self.get(device_id)
        if slot is not None:
            slot.context = replace(slot.context, presence=presence)

    def note_metrics(self, device_id: str, known: frozenset[str]) -> None:
        """Remember the device's metric registry just read or written."""
        slot = self.get(device_id)
        if slot is not None:
            slot.context = replace(slot.context, known_metrics=known)

    async def products_changed(self, product_ids: Iterable[str]) -> None:
        """These products' telemetry schemas changed, or they went: every process reads their
        devices' contexts again (call it after the database write)."""
        await self.announce(map(product_tag, product_ids))

    async def devices_changed(self, device_ids: Iterable[str]) -> None:
        """These devices moved to another product, or went: every process reads their contexts
        again (call it after the database write)."""
        await self.announce(map(device_tag, device_ids))
