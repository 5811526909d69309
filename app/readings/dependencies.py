"""Load the device a request acts on, and check the caller may, as `Annotated` dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.auth.dependencies import CurrentPrincipal
from app.core.deps import EngineDep
from app.devices.dependencies import DeviceForView
from app.ratelimit import dependencies as ratelimit
from app.readings.exceptions import DeviceKeyRequired, DeviceNotFound
from app.readings.ingest import IngestBatcher
from app.readings.repository import DeviceContext, DeviceContextCache


async def get_batcher(request: Request) -> IngestBatcher:
    """The group-commit batcher started in the lifespan."""
    batcher: IngestBatcher = request.app.state.ingest
    return batcher


async def get_context_cache(request: Request) -> DeviceContextCache:
    """The device-context cache made in the lifespan."""
    cache: DeviceContextCache = request.app.state.readings_cache
    return cache


BatcherDep = Annotated[IngestBatcher, Depends(get_batcher)]
ContextCacheDep = Annotated[DeviceContextCache, Depends(get_context_cache)]


async def get_own_device(
    request: Request, device_id: str, principal: CurrentPrincipal
) -> DeviceContext:
    """The device whose key made the request; any other device id is 404."""
    if not principal.is_device:
        raise DeviceKeyRequired("Only a device, with its own key, may post readings")
    if principal.device_id != device_id:
        raise DeviceNotFound()
    state = request.app.state
    cache: DeviceContextCache = state.readings_cache
    context = await cache.get(state.engine, device_id)
    if context is None:
        raise DeviceNotFound()
    return context


OwnDevice = Annotated[DeviceContext, Depends(get_own_device)]


async def get_ingest_device(
    request: Request, device_id: str, principal: CurrentPrincipal
) -> DeviceContext:
    """The posting device, counted once under its product's ingest limit (or the device's).

    One dependency on the ingest hot path (FastAPI's cost is per dependency and request).
    """
    device = await get_own_device(request, device_id, principal)
    await ratelimit.check_device(
        request, device.device_id, limit_per_minute=device.telemetry.ingest_limit_per_minute
    )
    return device


async def get_readable_device(
    device: DeviceForView, engine: EngineDep, cache: ContextCacheDep
) -> DeviceContext:
    """A device the caller may view (catalog's permission check; 404 when invisible)."""
    context = await cache.get(engine, str(device.id))
    if context is None:
        raise DeviceNotFound()
    return context


IngestDevice = Annotated[DeviceContext, Depends(get_ingest_device)]
ReadableDevice = Annotated[DeviceContext, Depends(get_readable_device)]
