"""Errors of the devices domain."""

from __future__ import annotations

from app.core.errors import Conflict, NotFound, Unprocessable


class DeviceNotFound(NotFound):
    """No such device, or the caller may not see it."""

    type = "device-not-found"
    title = "Device not found"


class SerialTaken(Conflict):
    """Another device has this serial number."""

    type = "serial-taken"
    title = "A device with this serial already exists"


class MetadataTooLarge(Unprocessable):
    """The metadata object is over the configured size."""

    type = "metadata-too-large"
    title = "Device metadata is too large"
