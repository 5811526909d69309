"""Storage models of the catalog: folders (a tree), products (device types), devices.

Each carries what the permission code needs to know of it (`app.catalog.permissions.service`
reads resources only through that protocol): its `kind` (resource type, not-found error, the
field its access path is stored in) and the folders whose grants reach it (`access_path`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from odmantic import Field

from app.catalog.exceptions import DeviceNotFound, FolderNotFound, ProductNotFound
from app.catalog.permissions.models import ResourceKind, ResourceType
from app.core import collections
from app.core.models import Document, index, stored_in, utcnow


class Folder(Document):
    """A folder (site, region, unit ...); `ancestors` lists the hex ids from the root down.

    `scope` is the parent's id, or `user:<creator uid>` at the top level, so that names are
    unique among siblings without clashing between users' top-level folders.
    """

    kind: ClassVar[ResourceKind] = ResourceKind(ResourceType.FOLDER, FolderNotFound, "ancestors")

    name: str
    name_key: str
    parent_id: str | None = None
    ancestors: list[str] = Field(default_factory=list)
    scope: str
    created_by: str
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    model_config = stored_in(
        collections.FOLDERS,
        index("scope", "name_key", unique=True),
        index("parent_id"),
        # Multikey: "everything below folder X" and the readable filter's inherited branch.
        index("ancestors"),
    )

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

    kind: ClassVar[ResourceKind] = ResourceKind(
        ResourceType.PRODUCT, ProductNotFound, "folder_path"
    )

    name: str
    name_key: str
    sku: str
    sku_key: str
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    folder_id: str | None = None
    folder_path: list[str] = Field(default_factory=list)
    telemetry: dict[str, Any] = Field(default_factory=dict)
    # `app.catalog.command_specs.CommandSpec.stored()` documents (params schema as JSON
    # text): the commands its devices understand.
    commands: list[dict[str, Any]] = Field(default_factory=list)
    owner_uid: str
    created_by: str
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    model_config = stored_in(
        collections.PRODUCTS,
        index("owner_uid", "sku_key", unique=True),
        *map(index, ("folder_path", "folder_id", "tags", "name_key", "sku_key")),
    )

    @property
    def access_path(self) -> list[str]:
        """The folders whose grants reach this product: its folder and that folder's ancestors."""
        return list(self.folder_path)


class Device(Document):
    """A device instance of a product, in a folder, with its hashed API key.

    `presence` is the sub-document `app.catalog.presence` owns (`{"last_seen_at",
    "reported_status", "detail"}`), always written whole, by ingest and heartbeats.
    """

    kind: ClassVar[ResourceKind] = ResourceKind(ResourceType.DEVICE, DeviceNotFound, "folder_path")

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

    model_config = stored_in(
        collections.DEVICES,
        index("serial", unique=True),
        index("key_hash", unique=True),
        *map(index, ("folder_path", "folder_id", "product_id", "name_key")),
        index("presence.last_seen_at"),
    )

    @property
    def access_path(self) -> list[str]:
        """The folders whose grants reach this device: its folder and that folder's ancestors."""
        return list(self.folder_path)


Resource = Folder | Product | Device
