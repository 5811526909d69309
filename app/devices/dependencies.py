"""Load a device and check the caller's role on it, as `Annotated` dependencies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends

from app.auth.dependencies import CurrentPrincipal
from app.core.deps import EngineDep
from app.devices import service as devices_service
from app.devices.models import Device
from app.permissions.models import Role


def device_for(role: Role) -> Callable[..., Awaitable[Device]]:
    """A dependency loading `{device_id}` if the caller holds `role` (404 if invisible).

    A device key holds `viewer` on its own device only.
    """

    async def load(device_id: str, engine: EngineDep, principal: CurrentPrincipal) -> Device:
        return await devices_service.get_for(
            engine, principal=principal, device_id=device_id, role=role
        )

    return load


DeviceForView = Annotated[Device, Depends(device_for(Role.VIEWER))]
DeviceForEdit = Annotated[Device, Depends(device_for(Role.EDITOR))]
DeviceForOwner = Annotated[Device, Depends(device_for(Role.OWNER))]
