"""Storage models of the catalog: folders (a tree), products (device types), devices.

Each carries what the permission code needs to know of it (`app.catalog.permissions.service`
reads resources only through that protocol): its resource type, its not-found error, and the
folders whose grants reach it (`access_path`, stored in `path_field`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from odmantic import Field
from pymongo import ASCENDING, IndexModel

from app.catalog.exceptions import DeviceNotFound, FolderNotFound, ProductNotFound
from app.catalog.permissions.models import ResourceType
from app.core import collections
from app.core.errors import NotFound
from app.core.models import Document, utcnow


class Folder(Document):
    """A folder (site, region, unit ...); `ancestors` lists the hex ids from the root down.

    `scope` is the parent's id, or `user:<creator uid>` at the top level, so that names are
    unique among siblings without clashing between users' top-level folders.
    """

    resource_type: ClassVar[ResourceType] = ResourceType.FOLDER
    not_found: ClassVar[type[NotFound]] = FolderNotFound
    path_field: ClassVar[str] = "ancestors"

    name: str
    name_key: str
    parent_id: str | None = None
    ancestors: list[str] = Field(default_factory=list)
    scope: str
    created_by: str
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    model_config = {
        "collection": collections.FOLDERS,
        "indexes": lambda: [
            IndexModel([("scope", ASCENDING), ("name_key", ASCENDING)], unique=True),
            IndexModel([("parent_id", ASCENDING)]),
            # Multikey: "everything below folder X" and the readable filter's inherited branch.
            IndexModel([("ancestors", ASCENDING)]),
        ],
    }

    @property
    def path(self) -> list[str]:
        """The ids from the root down to and including this folder."""
        return [*self.ancestors, str(self.id)]

    @property
    def access_path(self) -> list[str]:
        """The folders whose grants reach this one: its ancestors."""
        return list(self.ancestors)


class Product(Document):
    """A device type: name, SKU, tags and the telemetry schema its devices follow.

    `telemetry` is an `app.catalog.telemetry.TelemetrySchema` dump (read by readings);
    `folder_path` is the folder's ancestors plus the folder id, for inherited access.
    """

    resource_type: ClassVar[ResourceType] = ResourceType.PRODUCT
    not_found: ClassVar[type[NotFound]] = ProductNotFound
    path_field: ClassVar[str] = "folder_path"

    name: str
    name_key: str
    sku: str
    sku_key: str
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    folder_id: str | None = None
    folder_path: list[str] = Field(default_factory=list)
    telemetry: dict[str, Any] = Field(default_factory=dict)
    owner_uid: str
    created_by: str
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    model_config = {
        "collection": collections.PRODUCTS,
        "indexes": lambda: [
            IndexModel([("owner_uid", ASCENDING), ("sku_key", ASCENDING)], unique=True),
            IndexModel([("folder_path", ASCENDING)]),
            IndexModel([("folder_id", ASCENDING)]),
            IndexModel([("tags", ASCENDING)]),
            IndexModel([("name_key", ASCENDING)]),
            IndexModel([("sku_key", ASCENDING)]),
        ],
    }

    @property
    def access_path(self) -> list[str]:
        """The folders whose grants reach this product: its folder and that folder's ancestors."""
        return list(self.folder_path)


class Device(Document):
    """A device instance of a product, in a folder, with its hashed API key.

    `presence` is the sub-document `app.catalog.presence` owns (`{"last_seen_at",
    "reported_status", "detail"}`), always written whole, by ingest and heartbeats.
    """

    resource_type: ClassVar[ResourceType] = ResourceType.DEVICE
    not_found: ClassVar[type[NotFound]] = DeviceNotFound
    path_field: ClassVar[str] = "folder_path"

    name: str
    name_key: str
    serial: str
    product_id: str
    folder_id: str | None = None
    folder_path: list[str] = Field(default_factory=list)
    key_hash: str
    key_prefix: str
    # `{lat, lon}` in WGS 84 degrees; a plain dict because ODMantic cannot dump a null
    # optional embedded model.
    location: dict[str, float] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    presence: dict[str, Any] | None = None
    created_by: str
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    model_config = {
        "collection": collections.DEVICES,
        "indexes": lambda: [
            IndexModel([("serial", ASCENDING)], unique=True),
            IndexModel([("key_hash", ASCENDING)], unique=True),
            IndexModel([("folder_path", ASCENDING)]),
            IndexModel([("folder_id", ASCENDING)]),
            IndexModel([("product_id", ASCENDING)]),
            IndexModel([("name_key", ASCENDING)]),
            IndexModel([("presence.last_seen_at", ASCENDING)]),
        ],
    }

    @property
    def access_path(self) -> list[str]:
        """The folders whose grants reach this device: its folder and that folder's ancestors."""
        return list(self.folder_path)


Resource = Folder | Product | Device
