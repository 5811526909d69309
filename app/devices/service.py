"""Devices: instances of a product with their own API key and a status derived from presence."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from odmantic import AIOEngine
from pymongo.errors import DuplicateKeyError

from app.auth import device_keys
from app.auth.key_cache import DeviceKeyCache
from app.auth.principal import Principal
from app.core import db
from app.core.models import utcnow
from app.core.pagination import PageParams, and_filters, next_cursor
from app.devices.exceptions import DeviceNotFound, MetadataTooLarge, SerialTaken
from app.devices.models import Device
from app.devices.schemas import DeviceCreate, DeviceStatus, DeviceUpdate
from app.folders import service as folders_service
from app.permissions import service as permissions_service
from app.permissions import sharing
from app.permissions.models import ResourceType, Role
from app.products import service as products_service


@dataclass(frozen=True, slots=True)
class Presence:
    """What readings last recorded about a device, parsed from `devices.presence`."""

    last_seen_at: datetime | None
    reported_status: str | None
    detail: dict[str, Any] | None


def parse_presence(raw: dict[str, Any] | None) -> Presence:
    """Read the `presence` sub-document written by the readings domain."""
    if not raw:
        return Presence(None, None, None)
    seen = raw.get("last_seen_at")
    if isinstance(seen, str):  # tolerate a string date rather than failing a read
        seen = datetime.fromisoformat(seen)
    return Presence(
        last_seen_at=seen if isinstance(seen, datetime) else None,
        reported_status=raw.get("reported_status"),
        detail=raw.get("detail"),
    )


def derive_status(
    presence: dict[str, Any] | None, *, now: datetime, offline_after_s: int
) -> DeviceStatus:
    """online / offline / error from presence: silent too long is offline whatever it said."""
    seen = parse_presence(presence)
    if seen.last_seen_at is None or seen.last_seen_at < now - timedelta(seconds=offline_after_s):
        return DeviceStatus.OFFLINE
    if seen.reported_status == "error":
        return DeviceStatus.ERROR
    return DeviceStatus.ONLINE


def status_filter(status: DeviceStatus, *, now: datetime, offline_after_s: int) -> dict[str, Any]:
    """The query matching devices whose derived status is `status` (same rule as above)."""
    cutoff = now - timedelta(seconds=offline_after_s)
    if status is DeviceStatus.OFFLINE:
        # Never seen: `$in: [None]`, which the embedded server also honours inside `$and`.
        never = {"presence.last_seen_at": {"$in": [None]}}
        return {"$or": [never, {"presence.last_seen_at": {"$lt": cutoff}}]}
    recent = {"presence.last_seen_at": {"$gte": cutoff}}
    if status is DeviceStatus.ERROR:
        return {**recent, "presence.reported_status": "error"}
    return {**recent, "presence.reported_status": {"$ne": "error"}}


def check_metadata(metadata: dict[str, Any], *, max_bytes: int) -> None:
    """Refuse metadata whose JSON encoding is over the cap."""
    size = len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())
    if size > max_bytes:
        raise MetadataTooLarge(f"metadata is {size} bytes; at most {max_bytes} are allowed")


async def get(engine: AIOEngine, *, device_id: str) -> Device:
    """Load a device by hex id (malformed ids are simply not found)."""
    device = await db.find_by_id(engine, Device, device_id)
    if device is None:
        raise DeviceNotFound()
    return device


async def get_for(engine: AIOEngine, *, principal: Principal, device_id: str, role: Role) -> Device:
    """Load a device the caller holds `role` on (404 when invisible, 403 when too weak)."""
    device = await get(engine, device_id=device_id)
    await permissions_service.require(engine, principal, device, role)
    return device


async def create(
    engine: AIOEngine, *, principal: Principal, device_in: DeviceCreate, metadata_max_bytes: int
) -> tuple[Device, str]:
    """Create a device and its key; returns the device and the key (shown only now)."""
    uid = permissions_service.creator_uid(principal)
    check_metadata(device_in.metadata, max_bytes=metadata_max_bytes)
    await products_service.get_for(
        engine, principal=principal, product_id=device_in.product_id, role=Role.VIEWER
    )
    key = device_keys.generate()
    location = device_in.location
    device = Device(
        name=device_in.name,
        name_key=device_in.name.casefold(),
        serial=device_in.serial,
        product_id=device_in.product_id,
        folder_id=device_in.folder_id,
        folder_path=await folders_service.destination_path(
            engine, principal=principal, folder_id=device_in.folder_id
        ),
        key_hash=key.key_hash,
        key_prefix=key.key_prefix,
        location=location.model_dump() if location else None,
        metadata=device_in.metadata,
        created_by=uid,
    )
    try:
        await db.insert(engine, device)
    except DuplicateKeyError:
        raise SerialTaken() from None
    await sharing.grant_owner(engine, resource=device, principal=principal)
    return device, key.key


async def list_(
    engine: AIOEngine,
    *,
    principal: Principal,
    page: PageParams,
    offline_after_s: int,
    folder_id: str | None = None,
    product_id: str | None = None,
    status: DeviceStatus | None = None,
    q: str | None = None,
) -> tuple[list[Device], str | None]:
    """Devices the caller can see, filtered by folder, product, status and name/serial prefix."""
    readable = await permissions_service.readable_filter(engine, principal, ResourceType.DEVICE)
    filters: list[dict[str, Any]] = [readable]
    if folder_id is not None:
        filters.append({"folder_id": folder_id})
    if product_id is not None:
        filters.append({"product_id": product_id})
    if status is not None:
        filters.append(status_filter(status, now=utcnow(), offline_after_s=offline_after_s))
    if q:
        serial_prefix = {"$regex": "^" + re.escape(q)}
        filters.append(
            {"$or": [{"name_key": products_service.prefix_regex(q)}, {"serial": serial_prefix}]}
        )
    query = and_filters(*filters, page.filter())
    rows = await db.find_many(engine, Device, query, sort=[("_id", 1)], limit=page.limit + 1)
    return next_cursor(rows, page.limit)


async def update(
    engine: AIOEngine,
    *,
    principal: Principal,
    device: Device,
    device_in: DeviceUpdate,
    metadata_max_bytes: int,
) -> Device:
    """Change fields with a targeted `$set` (never touching `presence`); moves need owner."""
    changes: dict[str, Any] = {}
    fields = device_in.model_fields_set
    if device_in.name is not None:
        changes.update(name=device_in.name, name_key=device_in.name.casefold())
    if device_in.serial is not None:
        changes["serial"] = device_in.serial
    if device_in.metadata is not None:
        check_metadata(device_in.metadata, max_bytes=metadata_max_bytes)
        changes["metadata"] = device_in.metadata
    if "location" in fields:
        changes["location"] = device_in.location.model_dump() if device_in.location else None
    if device_in.product_id is not None and device_in.product_id != device.product_id:
        await products_service.get_for(
            engine, principal=principal, product_id=device_in.product_id, role=Role.VIEWER
        )
        changes["product_id"] = device_in.product_id
    if "folder_id" in fields and device_in.folder_id != device.folder_id:
        changes.update(
            await folders_service.move_fields(
                engine, principal=principal, resource=device, folder_id=device_in.folder_id
            )
        )
    try:
        await db.update_fields(engine, device, changes)
    except DuplicateKeyError:
        raise SerialTaken() from None
    return await get(engine, device_id=str(device.id))


async def rotate_key(
    engine: AIOEngine, *, device: Device, key_cache: DeviceKeyCache
) -> device_keys.NewDeviceKey:
    """Give the device a new key; the old one stops working with this write."""
    key = device_keys.generate()
    await db.collection(engine, Device).update_one(
        {"_id": device.id},
        {
            "$set": {"key_hash": key.key_hash, "key_prefix": key.key_prefix},
            "$currentDate": {"updated_at": True},
        },
    )
    await key_cache.revoke([str(device.id)])
    return key


async def delete(engine: AIOEngine, *, device: Device, key_cache: DeviceKeyCache) -> None:
    """Delete a device and its grants (its key stops working with it)."""
    await db.delete(engine, device)
    await key_cache.revoke([str(device.id)])
    await sharing.delete_for(engine, resource_type=ResourceType.DEVICE, ids=[str(device.id)])
