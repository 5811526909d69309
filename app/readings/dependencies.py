"""Load the device a request acts on, and check the caller may, as `Annotated` dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.auth.dependencies import CurrentPrincipal
from app.catalog.dependencies import DeviceForView
from app.catalog.exceptions import DeviceNotFound
from app.core.services import ServicesDep
from app.ratelimit import dependencies as ratelimit
from app.readings.context import DeviceContext
from app.readings.exceptions import DeviceKeyRequired


async def get_own_device(
    device_id: str, principal: CurrentPrincipal, services: ServicesDep
) -> DeviceContext:
    """The device whose key made the request; any other device id is 404."""
    if not principal.is_device:
        raise DeviceKeyRequired("Only a device, with its own key, may post readings")
    if principal.device_id != device_id:
        raise DeviceNotFound()
    context = await services.device_contexts.get(services.engine, device_id)
    if context is None:
        raise DeviceNotFound()
    return context


OwnDevice = Annotated[DeviceContext, Depends(get_own_device)]


async def get_ingest_device(request: Request, device: OwnDevice) -> DeviceContext:
    """The posting device, counted once under its product's ingest limit (or the device's)."""
    await ratelimit.check_device(
        request, device.device_id, limit_per_minute=device.telemetry.ingest_limit_per_minute
    )
    return device


async def get_readable_device(device: DeviceForView, services: ServicesDep) -> DeviceContext:
    """A device the caller may view (the catalog's permission check; 404 when invisible)."""
    context = await services.device_contexts.get(services.engine, str(device.id))
    if context is None:
        raise DeviceNotFound()
    return context


IngestDevice = Annotated[DeviceContext, Depends(get_ingest_device)]
ReadableDevice = Annotated[DeviceContext, Depends(get_readable_device)]
