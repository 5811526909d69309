"""API schemas of the devices domain."""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)

from app.catalog import presence
from app.catalog.presence import DeviceStatus
from app.catalog.schemas import Name, PatchBody
from app.core import openapi
from app.core.models import IdStr, utcnow

if TYPE_CHECKING:
    from app.catalog.models import Device

Serial = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,100}$")]
METADATA_MAX_DEPTH = 8
# A metadata key, as MongoDB stores field names: not empty, no `$` first, no `.` or NUL.
METADATA_KEY_PATTERN = r"^[^$.\u0000][^.\u0000]*$"
_VALUE_REF = {"$ref": "#/components/schemas/MetadataValue"}
openapi.SCHEMAS["MetadataValue"] = {
    "description": f"Any JSON value; objects nest at most {METADATA_MAX_DEPTH} levels deep.",
    "anyOf": [
        {"type": "null"},
        {"type": "boolean"},
        {"type": "number"},
        {"type": "string"},
        {"type": "array", "items": _VALUE_REF},
        {
            "type": "object",
            "propertyNames": {"pattern": METADATA_KEY_PATTERN},
            "additionalProperties": _VALUE_REF,
        },
    ],
}
Metadata = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {"pattern": METADATA_KEY_PATTERN},
            "additionalProperties": _VALUE_REF,
            "description": "free-form JSON; keys may not be empty, start with `$` or hold `.`",
        }
    ),
]


class LocationIn(BaseModel):
    """WGS 84 degrees."""

    model_config = ConfigDict(extra="forbid")

    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False)


def _check_keys(value: Any, depth: int = 0) -> None:
    """MongoDB field names may not start with `$` or contain `.`; nesting is bounded."""
    if depth > METADATA_MAX_DEPTH:
        raise ValueError(f"metadata may nest at most {METADATA_MAX_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            if not key or key.startswith("$") or "." in key or "\x00" in key:
                raise ValueError(f"invalid metadata key {key[:40]!r}: no '$' start, '.' or empty")
            _check_keys(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_keys(item, depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("metadata numbers must be finite")


class _MetadataChecked(BaseModel):
    @field_validator("metadata", check_fields=False)
    @classmethod
    def _metadata_keys(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            _check_keys(value)
        return value


class DeviceCreate(_MetadataChecked):
    """A new device of `product_id`, optionally in a folder and at a location."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    serial: Serial
    product_id: IdStr
    folder_id: IdStr | None = None
    location: LocationIn | None = None
    metadata: Metadata = Field(default_factory=dict)


class DeviceUpdate(PatchBody, _MetadataChecked):
    """Fields to change; `location: null` clears it, `folder_id: null` moves out of folders."""

    not_nullable = ("name", "serial", "product_id", "metadata")

    name: Name | None = None
    serial: Serial | None = None
    product_id: IdStr | None = None
    folder_id: IdStr | None = None
    location: LocationIn | None = None
    metadata: Metadata | None = None


class DeviceFilters(BaseModel):
    """`GET /devices` filters, all optional and combined."""

    folder_id: IdStr | None = Field(default=None, description="only devices in this folder")
    product_id: IdStr | None = Field(default=None, description="only this product")
    status: DeviceStatus | None = None
    q: str | None = Field(
        default=None, min_length=1, max_length=100, description="name or serial prefix"
    )


class LocationRead(BaseModel):
    """Where a device is."""

    lat: float
    lon: float


class DeviceRead(BaseModel):
    """A device as the API shows it (never its key or key hash)."""

    id: IdStr
    name: str
    serial: str
    product_id: IdStr
    folder_id: IdStr | None
    location: LocationRead | None
    metadata: dict[str, Any]
    key_prefix: str
    status: DeviceStatus
    last_seen_at: datetime | None
    created_by: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, device: Device, *, offline_after_s: int) -> Self:
        """The API view of a stored device, with its status derived now."""
        derived = DeviceStatusRead.of(device, offline_after_s=offline_after_s)
        return cls.model_validate(
            {**device.model_dump(), "status": derived.status, "last_seen_at": derived.last_seen_at}
        )


class DeviceCreated(DeviceRead):
    """The new device with its API key, shown this once."""

    key: str


class DeviceKeyRead(BaseModel):
    """A freshly rotated key, shown this once; the previous key no longer works."""

    device_id: IdStr
    key: str
    key_prefix: str


class DeviceStatusRead(BaseModel):
    """The derived status and what it was derived from."""

    device_id: IdStr
    status: DeviceStatus
    last_seen_at: datetime | None
    reported_status: str | None
    detail: dict[str, Any] | None
    offline_after_s: int

    @classmethod
    def of(cls, device: Device, *, offline_after_s: int) -> Self:
        """A stored device's status, derived now, and what it was derived from."""
        seen = presence.parse(device.presence)
        return cls(
            device_id=str(device.id),
            status=seen.status(now=utcnow(), offline_after_s=offline_after_s),
            last_seen_at=seen.last_seen_at,
            reported_status=seen.reported_status,
            detail=seen.detail,
            offline_after_s=offline_after_s,
        )
