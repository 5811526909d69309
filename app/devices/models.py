"""Storage model of the devices domain (document contract in BRIEF: `devices`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from odmantic import Field
from pymongo import ASCENDING, IndexModel

from app.core.models import Document, utcnow


class Device(Document):
    """A device instance of a product, in a folder, with its hashed API key.

    `presence` is written only by the readings domain, as a whole sub-document
    (`{"last_seen_at", "reported_status", "detail"}`); this domain only reads it.
    """

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
        "collection": "devices",
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
