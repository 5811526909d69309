"""API schemas of the readings domain (storage shapes live in models.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from app.catalog.presence import DeviceStatus
from app.catalog.telemetry import MetricName
from app.core.models import IdStr

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
MetricValue = bool | FiniteFloat | Annotated[str, StringConstraints(max_length=256)]
ReportedStatus = Literal["ok", "error"]
DetailValue = bool | FiniteFloat | Annotated[str, StringConstraints(max_length=256)] | None
# Stored as field names: MongoDB refuses `$` first, `.` and NUL in them.
DetailKey = Annotated[str, StringConstraints(pattern=r"^[^$.\x00][^.\x00]{0,63}$")]


class ReadingIn(BaseModel):
    """One reading; `ts` defaults to the time the server receives it."""

    model_config = ConfigDict(extra="forbid")

    ts: AwareDatetime | None = Field(
        default=None, description="RFC 3339 time with zone, e.g. 2026-03-01T12:00:00Z"
    )
    metrics: dict[MetricName, MetricValue] = Field(
        min_length=1,
        max_length=200,
        examples=[{"temperature": 22.5, "door_open": False}],
        json_schema_extra={"additionalProperties": False},
    )


class ReadingsBatchIn(BaseModel):
    """Several readings in one request (up to `READINGS_MAX_BATCH`)."""

    model_config = ConfigDict(extra="forbid")

    readings: list[ReadingIn] = Field(
        min_length=1, json_schema_extra={"x-settings": {"maxItems": "readings_max_batch"}}
    )


class RejectedReading(BaseModel):
    """A reading of the request that was not stored."""

    index: int
    reason: Literal["unknown-metric", "too-old", "too-many-metrics", "storage-error"]
    detail: str


class IngestResult(BaseModel):
    """The 202 answer: how many readings were stored and which were not."""

    accepted: int
    rejected: int
    errors: list[RejectedReading] = Field(default_factory=list)


class ReadingRead(BaseModel):
    """One stored reading."""

    ts: datetime
    metrics: dict[str, MetricValue]
    quality: Literal["suspect"] | None = None
    suspect: list[str] = Field(default_factory=list, description="metrics out of their range")


class ReadingsPage(BaseModel):
    """A page of history; pass `next_cursor` back as `cursor` for the next one."""

    items: list[ReadingRead]
    next_cursor: str | None


class LatestValue(BaseModel):
    """The newest value of one metric and when it was measured."""

    ts: datetime
    value: MetricValue
    suspect: bool = False


class LatestRead(BaseModel):
    """The newest value of every metric of a device."""

    device_id: IdStr
    ts: datetime | None = Field(description="time of the newest value of any metric")
    metrics: dict[str, LatestValue]


AggregateFunction = Literal["avg", "min", "max", "sum", "count", "first", "last"]


class AggregateBucket(BaseModel):
    """One time bucket: per metric, the requested functions (null when no data)."""

    start: datetime
    end: datetime
    values: dict[str, dict[str, int | float | None]]


class AggregateRead(BaseModel):
    """Downsampled readings of a device."""

    device_id: IdStr
    start: datetime
    end: datetime
    interval: str
    tz: str
    agg: list[AggregateFunction]
    metrics: list[str]
    buckets: list[AggregateBucket]


def _only_pattern_keys(schema: dict[str, Any]) -> None:
    """Say in the schema what validation does: keys outside `patternProperties` are refused."""
    for option in schema.get("anyOf", []):
        if option.get("type") == "object" and "patternProperties" in option:
            option["additionalProperties"] = False


class HeartbeatIn(BaseModel):
    """A device says it is alive; it may report its own status and details."""

    model_config = ConfigDict(extra="forbid")

    status: ReportedStatus | None = Field(
        default=None, description="ok or error; omit to keep the last reported status"
    )
    detail: dict[DetailKey, DetailValue] | None = Field(
        default=None,
        max_length=32,
        description="omit to keep the last reported detail",
        json_schema_extra=_only_pattern_keys,
    )


class PresenceRead(BaseModel):
    """What the service knows about a device's presence."""

    device_id: IdStr
    last_seen_at: datetime | None
    reported_status: ReportedStatus | None
    detail: dict[str, DetailValue]
    status: DeviceStatus | None = Field(
        default=None, description="derived: offline when silent too long, else error or online"
    )
