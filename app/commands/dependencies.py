"""The device a command route acts on, as `Annotated` dependencies.

Users go through the catalog's permission loaders (`DeviceForView`, `DeviceForEdit`); the
device-side routes accept only the device's own key: a user is 403, another device's key 404.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from app.auth.dependencies import CurrentPrincipal
from app.catalog.exceptions import DeviceNotFound
from app.commands.exceptions import DeviceKeyRequired
from app.core.openapi import raises


@raises(DeviceKeyRequired, DeviceNotFound)
async def get_polling_device(device_id: str, principal: CurrentPrincipal) -> str:
    """The id of the device whose key made the request; any other device id is 404."""
    if not principal.is_device:
        raise DeviceKeyRequired("Only the device itself, with its key, may do this")
    if principal.device_id != device_id:
        raise DeviceNotFound()
    return device_id


PollingDevice = Annotated[str, Depends(get_polling_device)]
