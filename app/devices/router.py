"""Devices: CRUD, key rotation and derived status under `/devices`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app.auth.dependencies import CurrentPrincipal, DeviceKeysDep, UserPrincipal
from app.core.config import Settings
from app.core.deps import EngineDep, SettingsDep
from app.core.models import IdStr, utcnow
from app.core.pagination import Page, PageParamsDep
from app.devices import service as devices_service
from app.devices.dependencies import DeviceForEdit, DeviceForOwner, DeviceForView
from app.devices.models import Device
from app.devices.schemas import (
    DeviceCreate,
    DeviceCreated,
    DeviceKeyRead,
    DeviceRead,
    DeviceStatus,
    DeviceStatusRead,
    DeviceUpdate,
)

router = APIRouter(prefix="/devices", tags=["devices"])


def device_read(device: Device, settings: Settings) -> DeviceRead:
    """The API view of a stored device, with its derived status."""
    data = device.model_dump()
    data["status"] = devices_service.derive_status(
        device.presence, now=utcnow(), offline_after_s=settings.device_offline_after_s
    )
    data["last_seen_at"] = devices_service.parse_presence(device.presence).last_seen_at
    return DeviceRead.model_validate(data)


@router.post("", response_model=DeviceCreated, status_code=status.HTTP_201_CREATED)
async def create_device(
    body: DeviceCreate, engine: EngineDep, settings: SettingsDep, principal: UserPrincipal
) -> DeviceCreated:
    """Create a device; the response carries its API key, shown this once."""
    device, key = await devices_service.create(
        engine,
        principal=principal,
        device_in=body,
        metadata_max_bytes=settings.device_metadata_max_bytes,
    )
    return DeviceCreated(**device_read(device, settings).model_dump(), key=key)


@router.get("", response_model=Page[DeviceRead])
async def list_devices(
    engine: EngineDep,
    settings: SettingsDep,
    principal: CurrentPrincipal,
    page: PageParamsDep,
    folder_id: Annotated[IdStr | None, Query(description="only devices in this folder")] = None,
    product_id: Annotated[IdStr | None, Query(description="only this product")] = None,
    status_: Annotated[DeviceStatus | None, Query(alias="status")] = None,
    q: Annotated[
        str | None, Query(min_length=1, max_length=100, description="name or serial prefix")
    ] = None,
) -> Page[DeviceRead]:
    """Devices you can see, filtered by folder, product, status or a name/serial prefix."""
    items, cursor = await devices_service.list_(
        engine,
        principal=principal,
        page=page,
        offline_after_s=settings.device_offline_after_s,
        folder_id=folder_id,
        product_id=product_id,
        status=status_,
        q=q,
    )
    return Page[DeviceRead](items=[device_read(d, settings) for d in items], next_cursor=cursor)


@router.get("/{device_id}", response_model=DeviceRead)
async def get_device(device: DeviceForView, settings: SettingsDep) -> DeviceRead:
    """One device you can see (a device key sees its own device)."""
    return device_read(device, settings)


@router.patch("/{device_id}", response_model=DeviceRead)
async def update_device(
    device: DeviceForEdit,
    body: DeviceUpdate,
    engine: EngineDep,
    settings: SettingsDep,
    principal: CurrentPrincipal,
) -> DeviceRead:
    """Change a device (editor); moving it to another folder needs owner."""
    updated = await devices_service.update(
        engine,
        principal=principal,
        device=device,
        device_in=body,
        metadata_max_bytes=settings.device_metadata_max_bytes,
    )
    return device_read(updated, settings)


@router.delete(
    "/{device_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    response_model=None,
)
async def delete_device(
    device: DeviceForOwner, engine: EngineDep, key_cache: DeviceKeysDep
) -> Response:
    """Delete a device; its key stops working."""
    await devices_service.delete(engine, device=device, key_cache=key_cache)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{device_id}/keys", response_model=DeviceKeyRead, status_code=status.HTTP_201_CREATED)
async def rotate_device_key(
    device: DeviceForEdit, engine: EngineDep, key_cache: DeviceKeysDep
) -> DeviceKeyRead:
    """Issue a new key (shown this once); the previous key stops working at once."""
    key = await devices_service.rotate_key(engine, device=device, key_cache=key_cache)
    return DeviceKeyRead(device_id=str(device.id), key=key.key, key_prefix=key.key_prefix)


@router.get("/{device_id}/status", response_model=DeviceStatusRead)
async def device_status(device: DeviceForView, settings: SettingsDep) -> DeviceStatusRead:
    """online / offline / error, derived from the device's last reading or heartbeat."""
    presence = devices_service.parse_presence(device.presence)
    return DeviceStatusRead(
        device_id=str(device.id),
        status=devices_service.derive_status(
            device.presence, now=utcnow(), offline_after_s=settings.device_offline_after_s
        ),
        last_seen_at=presence.last_seen_at,
        reported_status=presence.reported_status,
        detail=presence.detail,
        offline_after_s=settings.device_offline_after_s,
    )
