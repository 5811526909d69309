"""Devices: CRUD, key rotation and derived status under `/devices`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status

from app.auth.dependencies import CurrentPrincipal, UserPrincipal
from app.auth.exceptions import KeyRevocationPending
from app.catalog.dependencies import DeviceForEdit, DeviceForOwner, DeviceForView, visible
from app.catalog.devices import service as devices_service
from app.catalog.devices.schemas import (
    DeviceCreate,
    DeviceCreated,
    DeviceFilters,
    DeviceKeyRead,
    DeviceRead,
    DeviceStatusRead,
    DeviceUpdate,
)
from app.catalog.exceptions import (
    FolderNotFound,
    MetadataTooLarge,
    ProductNotFound,
    SerialTaken,
)
from app.catalog.permissions.exceptions import NotAllowed
from app.core.feed_cache import InvalidationPending
from app.core.openapi import raises
from app.core.pagination import Listing, Page
from app.core.responses import NO_CONTENT
from app.core.routing import API_PREFIX
from app.core.services import ServicesDep

router = APIRouter(prefix=f"{API_PREFIX}/devices", tags=["devices"])

DeviceListing = Annotated[Listing[DeviceFilters], Depends(visible(DeviceFilters))]


@router.post("", response_model=DeviceCreated, status_code=status.HTTP_201_CREATED)
@raises(
    ProductNotFound, FolderNotFound, NotAllowed, SerialTaken, MetadataTooLarge, InvalidationPending
)
async def create_device(
    body: DeviceCreate, services: ServicesDep, principal: UserPrincipal
) -> DeviceCreated:
    """Create a device; the response carries its API key, shown this once."""
    device, key = await devices_service.create(services, principal=principal, device_in=body)
    view = DeviceRead.of(device, offline_after_s=services.settings.device_offline_after_s)
    return DeviceCreated(**view.model_dump(), key=key)


@router.get("", response_model=Page[DeviceRead])
async def list_devices(listing: DeviceListing) -> Page[DeviceRead]:
    """Devices you can see, filtered by folder, product, status or a name/serial prefix."""
    offline_after_s = listing.services.settings.device_offline_after_s
    return await listing.page_of(
        Page[DeviceRead],
        devices_service.list_,
        lambda d: DeviceRead.of(d, offline_after_s=offline_after_s),
        offline_after_s=offline_after_s,
    )


@router.get("/{device_id}", response_model=DeviceRead)
async def get_device(device: DeviceForView, services: ServicesDep) -> DeviceRead:
    """One device you can see (a device key sees its own device)."""
    return DeviceRead.of(device, offline_after_s=services.settings.device_offline_after_s)


@router.patch("/{device_id}", response_model=DeviceRead)
@raises(
    ProductNotFound, FolderNotFound, NotAllowed, SerialTaken, MetadataTooLarge, InvalidationPending
)
async def update_device(
    device: DeviceForEdit,
    body: DeviceUpdate,
    services: ServicesDep,
    principal: CurrentPrincipal,
) -> DeviceRead:
    """Change a device (editor); moving it to another folder needs owner."""
    updated = await devices_service.update(
        services, principal=principal, device=device, device_in=body
    )
    return DeviceRead.of(updated, offline_after_s=services.settings.device_offline_after_s)


@router.delete("/{device_id}", **NO_CONTENT)
@raises(KeyRevocationPending, InvalidationPending)
async def delete_device(device: DeviceForOwner, services: ServicesDep) -> None:
    """Delete a device; its key stops working."""
    await devices_service.delete(services, device=device)


@router.post("/{device_id}/keys", response_model=DeviceKeyRead, status_code=status.HTTP_201_CREATED)
@raises(KeyRevocationPending)
async def rotate_device_key(device: DeviceForEdit, services: ServicesDep) -> DeviceKeyRead:
    """Issue a new key (shown this once); the previous key stops working at once."""
    key = await devices_service.rotate_key(
        services.engine, device=device, key_cache=services.device_keys
    )
    return DeviceKeyRead(device_id=str(device.id), key=key.key, key_prefix=key.key_prefix)


@router.get("/{device_id}/status", response_model=DeviceStatusRead)
async def device_status(device: DeviceForView, services: ServicesDep) -> DeviceStatusRead:
    """online / offline / error, derived from the device's last reading or heartbeat."""
    return DeviceStatusRead.of(device, offline_after_s=services.settings.device_offline_after_s)
