"""Storage model of the products domain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from odmantic import Field
from pymongo import ASCENDING, IndexModel

from app.core.models import Document, utcnow


class Product(Document):
    """A device type: name, SKU, tags and the telemetry schema its devices follow.

    `telemetry` is an `app.products.telemetry.TelemetrySchema` dump (read by readings);
    `folder_path` is the folder's ancestors plus the folder id, for inherited access.
    """

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
        "collection": "products",
        "indexes": lambda: [
            IndexModel([("owner_uid", ASCENDING), ("sku_key", ASCENDING)], unique=True),
            IndexModel([("folder_path", ASCENDING)]),
            IndexModel([("folder_id", ASCENDING)]),
            IndexModel([("tags", ASCENDING)]),
            IndexModel([("name_key", ASCENDING)]),
            IndexModel([("sku_key", ASCENDING)]),
        ],
    }
