"""The telemetry schema of a product: which metrics its devices send and what is valid.

Stored on the product (catalog) and checked on ingest (readings).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

# The one metric-name rule: a letter, then up to 63 letters, digits, `_`, `.` or `-`.
METRIC_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"
# Python checks use `fullmatch`: `$` would also accept a name ending in a newline.
METRIC_NAME = re.compile(METRIC_NAME_PATTERN)
MetricName = Annotated[str, Field(pattern=METRIC_NAME_PATTERN)]
# Query parameters that name metrics take up to 50 names, comma-separated, no spaces.
MAX_METRICS_PER_QUERY = 50
_NAME = METRIC_NAME_PATTERN.strip("^$")
METRIC_LIST_PATTERN = f"^{_NAME}(,{_NAME}){{0,{MAX_METRICS_PER_QUERY - 1}}}$"


class MetricType(StrEnum):
    """What values a metric takes."""

    NUMBER = "number"
    BOOLEAN = "boolean"
    STRING = "string"


class MetricSpec(BaseModel):
    """One metric: name, unit, type and optional valid range."""

    model_config = ConfigDict(extra="forbid")

    name: MetricName
    unit: str | None = Field(default=None, max_length=32)
    type: MetricType = MetricType.NUMBER
    min: float | None = Field(default=None, allow_inf_nan=False)
    max: float | None = Field(default=None, allow_inf_nan=False)
    description: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _range_is_ordered(self) -> MetricSpec:
        # Rules between fields, which JSON Schema cannot state: named error types, so that
        # clients (and the contract test) can tell them from shape errors.
        if self.min is not None and self.max is not None and self.min > self.max:
            raise PydanticCustomError("metric_range_order", "min must not be greater than max")
        if self.type is not MetricType.NUMBER and (self.min is not None or self.max is not None):
            raise PydanticCustomError(
                "metric_range_type", "min and max apply to number metrics only"
            )
        return self


class TelemetrySchema(BaseModel):
    """The metrics of a product; `allow_unknown` decides about metrics not listed."""

    model_config = ConfigDict(extra="forbid")

    metrics: list[MetricSpec] = Field(default_factory=list, max_length=200)
    allow_unknown: bool = True
    ingest_limit_per_minute: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        json_schema_extra={"x-settings": {"maximum": "rate_limit_device_max"}},
    )

    @model_validator(mode="after")
    def _unique_names(self) -> TelemetrySchema:
        names = [m.name for m in self.metrics]
        if len(names) != len(set(names)):
            raise PydanticCustomError("metric_names_unique", "metric names must be unique")
        return self
