"""API views of the fleet statistics."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class ProductCount(BaseModel):
    """How many visible devices one product has."""

    product_id: str
    devices: int = Field(ge=0)


class MinuteCount(BaseModel):
    """Readings stored in one minute (UTC, by the time they were stored)."""

    minute_at: datetime
    readings: int = Field(ge=0)


class FleetStats(BaseModel):
    """Counts over the devices the caller can see, within the filters."""

    devices_total: int = Field(ge=0)
    devices_by_status: dict[str, int] = Field(
        description="`online`, `offline` and `error` (always all three)."
    )
    devices_by_product: list[ProductCount]
    readings_per_minute: list[MinuteCount] = Field(
        description="The last 60 minutes, oldest first, the current minute last."
    )
    active_alarms_by_severity: dict[str, int] = Field(
        description="Active alarms by severity (every severity present, zeros included)."
    )
    last_seen_at: datetime | None = Field(description="The newest `last_seen_at` among them.")
    generated_at: datetime
