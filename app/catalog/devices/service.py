"""Devices: instances of a product with their own API key and a status derived from presence."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from odmantic import AIOEngine

from app.auth import device_keys
from app.auth.key_cache import DeviceKeyCache
from app.auth.principal import Principal
from app.catalog import crud, presence
from app.catalog.devices.schemas import DeviceCreate, DeviceFilters, DeviceUpdate
from app.catalog.exceptions import MetadataTooLarge, SerialTaken
from app.catalog.models import Device, Product
from app.catalog.permissions import service as permissions_service
from app.catalog.permissions import sharing
from app.catalog.permissions.models import ResourceType, Role
from app.core import db
from app.core.models import utcnow
from app.core.pagination import PageParams

if TYPE_CHECKING:
    from app.core.services import Services


def check_metadata(metadata: dict[str, Any], *, max_bytes: int) -> None:
    """Refuse metadata whose JSON encoding is over the cap."""
    size = len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())
    if size > max_bytes:
        raise MetadataTooLarge(f"metadata is {size} bytes; at most {max_bytes} are allowed")


async def create(
    services: Services, *, principal: Principal, device_in: DeviceCreate
) -> tuple[Device, str]:
    """Create a device and its key; returns the device and the key (shown only now)."""
    engine, metadata_max_bytes = services.engine, services.settings.device_metadata_max_bytes
    uid = permissions_service.creator_uid(principal)
    check_metadata(device_in.metadata, max_bytes=metadata_max_bytes)
    await crud.get_for(
        engine, Product, principal=principal, resource_id=device_in.product_id, role=Role.VIEWER
    )
    key = device_keys.generate()
    location = device_in.location
    device = Device(
        **crud.name_fields(device_in.name),
        serial=device_in.serial,
        product_id=device_in.product_id,
        **await crud.placement(engine, principal=principal, folder_id=device_in.folder_id),
        key_hash=key.key_hash,
        key_prefix=key.key_prefix,
        location=location.model_dump() if location else None,
        metadata=device_in.metadata,
        created_by=uid,
    )
    await crud.insert_owned(engine, device, principal=principal, taken=SerialTaken)
    await services.on_devices_changed(device_ids=[str(device.id)])
    return device, key.key


async def list_(
    engine: AIOEngine,
    *,
    principal: Principal,
    page: PageParams,
    filters_in: DeviceFilters,
    offline_after_s: int,
) -> tuple[list[Device], str | None]:
    """Devices the caller can see, filtered by folder, product, status and name/serial prefix."""
    filters = crud.equal_to(folder_id=filters_in.folder_id, product_id=filters_in.product_id)
    if filters_in.status is not None:
        now = utcnow()
        filters.append(
            presence.status_filter(filters_in.status, now=now, offline_after_s=offline_after_s)
        )
    if q := filters_in.q:
        by_name, by_serial = crud.prefix_regex(q), crud.prefix_regex(q, fold=False)
        filters.append({"$or": [{"name_key": by_name}, {"serial": by_serial}]})
    return await crud.list_readable(engine, Device, principal=principal, page=page, filters=filters)


async def update(
    services: Services, *, principal: Principal, device: Device, device_in: DeviceUpdate
) -> Device:
    """Change fields with a targeted `$set` (never touching `presence`); moves need owner.

    A move is announced through the access cache: every process checks the new path at once;
    a new product through the context cache: every process checks the next reading by its
    schema."""
    engine, metadata_max_bytes = services.engine, services.settings.device_metadata_max_bytes
    changes = crud.renamed(device_in.name)
    fields = device_in.model_fields_set
    if device_in.serial is not None:
        changes["serial"] = device_in.serial
    if device_in.metadata is not None:
        check_metadata(device_in.metadata, max_bytes=metadata_max_bytes)
        changes["metadata"] = device_in.metadata
    if "location" in fields:
        changes["location"] = device_in.location.model_dump() if device_in.location else None
    if device_in.product_id is not None and device_in.product_id != device.product_id:
        await crud.get_for(
            engine,
            Product,
            principal=principal,
            resource_id=device_in.product_id,
            role=Role.VIEWER,
        )
        changes["product_id"] = device_in.product_id
    if "folder_id" in fields and device_in.folder_id != device.folder_id:
        changes.update(
            await crud.move_fields(
                engine, principal=principal, resource=device, folder_id=device_in.folder_id
            )
        )
    updated = await crud.apply_changes(engine, device, changes, taken=SerialTaken)
    device_ids = [str(device.id)]
    if "folder_path" in changes:
        await services.access.resources_changed(device_ids)
    await services.on_devices_changed(device_ids=device_ids)
    if "product_id" in changes:
        await services.device_contexts.devices_changed(device_ids)
    return updated


async def rotate_key(
    engine: AIOEngine, *, device: Device, key_cache: DeviceKeyCache
) -> device_keys.NewDeviceKey:
    """Give the device a new key; the old one stops working with this write."""
    key = device_keys.generate()
    await db.update_fields(engine, device, {"key_hash": key.key_hash, "key_prefix": key.key_prefix})
    await key_cache.revoke([str(device.id)])
    return key


async def delete(services: Services, *, device: Device) -> None:
    """Delete a device and its grants (its key and every user's access stop with it)."""
    device_id = str(device.id)
    await db.delete(services.engine, device)
    await services.access.resources_changed([device_id])
    await services.device_keys.revoke([device_id])
    await sharing.delete_for(services.engine, resource_type=ResourceType.DEVICE, ids=[device_id])
    await services.on_devices_changed(device_ids=[device_id])
    await services.device_contexts.devices_changed([device_id])
