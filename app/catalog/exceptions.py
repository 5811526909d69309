"""Errors of the catalog: missing resources (also what the caller may not see) and conflicts."""

from __future__ import annotations

from app.core.errors import Conflict, NotFound, Unprocessable


class FolderNotFound(NotFound):
    """No such folder, or the caller may not see it."""

    type = "folder-not-found"
    title = "Folder not found"


class ProductNotFound(NotFound):
    """No such product, or the caller may not see it."""

    type = "product-not-found"
    title = "Product not found"


class DeviceNotFound(NotFound):
    """No such device, or the caller may not see it (or act on it with its key)."""

    type = "device-not-found"
    title = "Device not found"


class FolderNameTaken(Conflict):
    """A sibling folder already has this name."""

    type = "folder-name-taken"
    title = "A folder with this name already exists here"


class FolderCycle(Conflict):
    """A folder cannot be moved into itself or below itself."""

    type = "folder-cycle"
    title = "A folder cannot be moved below itself"


class FolderNotEmpty(Conflict):
    """The folder holds folders, products or devices; delete with `recursive=true`."""

    type = "folder-not-empty"
    title = "Folder is not empty"


class SkuTaken(Conflict):
    """The owner already has a product with this SKU."""

    type = "sku-taken"
    title = "A product with this SKU already exists"


class ProductInUse(Conflict):
    """Devices still use the product."""

    type = "product-in-use"
    title = "Product is used by devices"


class SerialTaken(Conflict):
    """Another device has this serial number."""

    type = "serial-taken"
    title = "A device with this serial already exists"


class IngestLimitTooHigh(Unprocessable):
    """A product asks for more readings per minute than the operator allows devices."""

    type = "ingest-limit-too-high"
    title = "Ingest limit above the operator's maximum"


class FolderTooDeep(Unprocessable):
    """The folder tree would be deeper than the operator allows."""

    type = "folder-too-deep"
    title = "Folder tree too deep"


class MetadataTooLarge(Unprocessable):
    """The metadata object is over the configured size."""

    type = "metadata-too-large"
    title = "Device metadata is too large"
