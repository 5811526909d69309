"""Load the device a request acts on, and check the caller may, as `Annotated` dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from app.auth.dependencies import CurrentPrincipal
from app.auth.principal import Principal
from app.catalog import crud
from app.catalog.exceptions import DeviceNotFound
from app.catalog.permissions.exceptions import NotAllowed
from app.catalog.permissions.models import Role
from app.core.models import IdPath
from app.core.openapi import DEVICE_KEY, accepts, raises
from app.core.services import Services, ServicesDep
from app.ratelimit import dependencies as ratelimit
from app.ratelimit.exceptions import RateLimitExceeded
from app.readings import ingest
from app.readings.context import DeviceContext
from app.readings.exceptions import DeviceKeyRequired


@accepts(DEVICE_KEY)
@raises(DeviceKeyRequired, DeviceNotFound, RateLimitExceeded)
async def get_own_device(
    connection: HTTPConnection,
    device_id: IdPath,
    principal: CurrentPrincipal,
    services: ServicesDep,
) -> DeviceContext:
    """The device whose key made the request; any other device id is 404."""
    return await own_device(connection, device_id=device_id, principal=principal, services=services)


async def own_device(
    connection: HTTPConnection, *, device_id: str, principal: Principal, services: Services
) -> DeviceContext:
    """`get_own_device` without FastAPI, for routes served outside the router."""
    if not principal.is_device:
        raise DeviceKeyRequired("Only a device, with its own key, may post readings")
    if principal.device_id != device_id:
        # A real key aimed at another device counts against its own device (the ingest
        # route is skipped by the router-wide limit, which counts every other route).
        if ratelimit.is_self_limited(connection):
            await ratelimit.check_device(connection, principal.device_id or principal.uid)
        raise DeviceNotFound()
    context = await services.device_contexts.context(services.engine, device_id)
    if context is None:
        raise DeviceNotFound()
    return context


OwnDevice = Annotated[DeviceContext, Depends(get_own_device)]


@raises(RateLimitExceeded)
async def get_ingest_device(
    request: Request, device: OwnDevice, services: ServicesDep
) -> DeviceContext:
    """The posting device, counted once under its product's ingest limit (or the device's).

    A product's limit is capped by RATE_LIMIT_DEVICE_MAX here too, for products stored
    before the cap was lowered.
    """
    return await count_ingest(request, device=device, services=services)


async def count_ingest(
    connection: HTTPConnection, *, device: DeviceContext, services: Services
) -> DeviceContext:
    """`get_ingest_device` without FastAPI, for routes served outside the router."""
    limit = device.telemetry.ingest_limit_per_minute
    if limit is not None:
        limit = min(limit, services.settings.rate_limit_device_max)
    await ratelimit.check_device(connection, device.device_id, limit_per_minute=limit)
    return device


@raises(DeviceNotFound, NotAllowed)
async def get_readable_device(
    device_id: IdPath, services: ServicesDep, principal: CurrentPrincipal
) -> DeviceContext:
    """A device the caller may view (the catalog's permission check; 404 when invisible).

    The check reads the catalog's access cache, the context is cached too: warm, only the
    readings asked for are read (one dependency, not two: each costs FastAPI time)."""
    return await readable_device(device_id=device_id, principal=principal, services=services)


async def readable_device(
    *, device_id: str, principal: Principal, services: Services
) -> DeviceContext:
    """`get_readable_device` without FastAPI, for routes served outside the router."""
    device = await crud.device_access_for(
        services.engine,
        principal=principal,
        device_id=device_id,
        role=Role.VIEWER,
        access=services.access,
    )
    context = await services.device_contexts.context(services.engine, str(device.id))
    if context is None:
        raise DeviceNotFound()
    return context


IngestDevice = Annotated[DeviceContext, Depends(get_ingest_device)]
ReadableDevice = Annotated[DeviceContext, Depends(get_readable_device)]


async def store_readings(
    request: Request, services: Services, *, device: DeviceContext, idempotency_key: str | None
) -> ingest.IngestAnswer:
    """Store the readings in this request's body with this process's batcher and caches (the
    ingest route and its fast path)."""
    return await ingest.receive(
        services.engine,
        batcher=services.batcher,
        context=device,
        body_in=await request.body(),
        idempotency_key=idempotency_key,
        settings=services.settings,
        cache=services.device_contexts,
    )
