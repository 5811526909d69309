"""Parse and check an ingest body against the product's telemetry schema, fast.

Rules (documented for device makers in the README):
- The whole request is rejected (422, nothing stored) for anything a device must fix: a body
  that is not JSON (NaN and Infinity included), a wrong shape, an empty batch or one over the
  cap, and any reading with a time stamp without zone, unparseable or too far in the future,
  missing or empty `metrics`, a bad metric name, or a value that is not a finite number,
  boolean or short string, or whose type differs from the product's schema.
- Single readings of a batch are rejected (listed by index in the 202 answer, the rest
  stored) for what the device cannot fix by itself: a metric the product's schema does not list
  when it does not allow unknown metrics, and readings older than the retention period.
  When every reading is rejected this way the request answers 422.
- Values outside a metric's min/max are stored, flagged `quality: "suspect"`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic_core

from app.catalog.telemetry import METRIC_NAME, MetricSpec, MetricType, TelemetrySchema
from app.readings.exceptions import MalformedReadings, ReadingsInvalid
from app.readings.models import SUSPECT, field_key

MAX_METRICS_PER_READING = 200
MAX_STRING_VALUE = 256
MAX_ERRORS_REPORTED = 100
_READING_KEYS = frozenset({"ts", "metrics"})


@dataclass(slots=True)
class Rejection:
    """One reading of a batch that was not stored, and why."""

    index: int
    reason: str
    detail: str


@dataclass(slots=True)
class CheckedBatch:
    """Readings ready to store (documents without `_id`) and the ones rejected by index."""

    docs: list[dict[str, Any]] = field(default_factory=list)
    indexes: list[int] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    # Where the readings were in the body: ["body"] for one, ["body", "readings"] for a batch.
    base: list[Any] = field(default_factory=lambda: ["body"])
    batched: bool = False

    def require_some(self) -> None:
        """Refuse the request (422) when every reading was refused one by one."""
        if self.docs:
            return
        raise ReadingsInvalid(
            "no reading could be stored",
            errors=[
                {
                    "loc": [*self.base, r.index] if self.batched else list(self.base),
                    "index": r.index,
                    "msg": r.detail,
                    "type": r.reason,
                }
                for r in self.rejected[:MAX_ERRORS_REPORTED]
            ],
        )

    @property
    def total(self) -> int:
        """How many readings the request carried."""
        return len(self.docs) + len(self.rejected)


def parse_json(body: bytes) -> Any:
    """Parse a body strictly: NaN, Infinity and trailing garbage are not JSON."""
    try:
        return pydantic_core.from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        raise MalformedReadings(
            "The request body is not valid JSON",
            errors=[{"loc": ["body"], "msg": str(exc), "type": "json_invalid"}],
        ) from None


def to_utc_ms(value: datetime) -> datetime:
    """An aware datetime in UTC, truncated to milliseconds (what BSON keeps)."""
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def parse_ts(value: Any) -> datetime:
    """An RFC 3339 time stamp with zone (`Z` or an offset); ValueError otherwise."""
    if not isinstance(value, str) or len(value) > 40:
        raise ValueError("must be an RFC 3339 date-time string with a time zone")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("must be an RFC 3339 date-time string with a time zone") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("must include a time zone (Z or +hh:mm)")
    return to_utc_ms(parsed)


class _Errors:
    """Collects whole-request errors, up to a bound."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.count = 0

    def add(self, loc: list[Any], msg: str, type_: str, index: int | None = None) -> None:
        self.count += 1
        if len(self.items) < MAX_ERRORS_REPORTED:
            entry: dict[str, Any] = {"loc": loc, "msg": msg, "type": type_}
            if index is not None:
                entry["index"] = index
            self.items.append(entry)


@dataclass(frozen=True, slots=True)
class Rules:
    """What a reading is checked against: the product's schema and the time window."""

    specs: dict[str, MetricSpec]
    allow_unknown: bool
    now: datetime
    latest_ok: datetime
    oldest_ok: datetime
    max_future_skew_s: int
    meta: dict[str, str]

    @classmethod
    def of(
        cls,
        *,
        device_id: str,
        product_id: str,
        telemetry: TelemetrySchema,
        now: datetime,
        max_future_skew: timedelta,
        retention: timedelta,
    ) -> Rules:
        """The rules for one request of one device."""
        return cls(
            specs={m.name: m for m in telemetry.metrics},
            allow_unknown=telemetry.allow_unknown,
            now=now,
            latest_ok=now + max_future_skew,
            oldest_ok=now - retention,
            max_future_skew_s=int(max_future_skew.total_seconds()),
            meta={"device_id": device_id, "product_id": product_id},
        )


class _Invalid(Exception):
    """A reading the device must fix: where and why (the whole request is refused)."""

    def __init__(self, loc: list[Any], msg: str, type_: str) -> None:
        super().__init__(msg)
        self.loc, self.msg, self.type = loc, msg, type_


def _check_value(
    name: str, value: Any, spec: MetricSpec | None, loc: list[Any]
) -> tuple[Any, bool]:
    """A metric's stored value and whether it is out of its range; `_Invalid` when bad."""
    if spec is None and not METRIC_NAME.fullmatch(name):
        raise _Invalid([*loc, "metrics", name], "invalid metric name", "name_invalid")
    kind = spec.type if spec is not None else None
    suspect = False
    if isinstance(value, bool):
        ok = kind is None or kind is MetricType.BOOLEAN
    elif isinstance(value, int | float):
        ok = kind is None or kind is MetricType.NUMBER
        if ok:
            try:
                value = float(value)
            except OverflowError:
                value = math.inf
            if not math.isfinite(value):
                raise _Invalid([*loc, "metrics", name], "must be finite", "finite_number")
            suspect = spec is not None and (
                (spec.min is not None and value < spec.min)
                or (spec.max is not None and value > spec.max)
            )
    elif isinstance(value, str):
        ok = (kind is None or kind is MetricType.STRING) and len(value) <= MAX_STRING_VALUE
    else:
        ok = False
    if not ok:
        expected = kind.value if kind is not None else "a number, boolean or short string"
        raise _Invalid([*loc, "metrics", name], f"must be {expected}", "value_type")
    return value, suspect


def _check_ts(raw_ts: Any, rules: Rules, loc: list[Any]) -> datetime:
    if raw_ts is None:
        return rules.now
    try:
        ts = parse_ts(raw_ts)
    except ValueError as exc:
        raise _Invalid([*loc, "ts"], str(exc), "datetime_invalid") from None
    if ts > rules.latest_ok:
        raise _Invalid(
            [*loc, "ts"],
            f"is more than {rules.max_future_skew_s} s in the future",
            "datetime_future",
        )
    return ts


def check_reading(
    reading: Any, index: int, *, rules: Rules, loc: list[Any]
) -> dict[str, Any] | Rejection:
    """One reading as a document to store, or the reason it is not stored (`Rejection`).

    Raises `_Invalid` for what the device must fix (the whole request is then refused).
    """
    if not isinstance(reading, dict):
        raise _Invalid(loc, "each reading must be an object", "type_error")
    extra = reading.keys() - _READING_KEYS
    if extra:
        raise _Invalid([*loc, sorted(extra)[0]], "unknown field", "extra_forbidden")
    ts = _check_ts(reading.get("ts"), rules, loc)
    metrics = reading.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise _Invalid([*loc, "metrics"], "must be a non-empty object", "metrics_empty")
    if len(metrics) > MAX_METRICS_PER_READING:
        raise _Invalid(
            [*loc, "metrics"], f"at most {MAX_METRICS_PER_READING} metrics per reading", "too_long"
        )
    stored: dict[str, Any] = {}
    suspect: list[str] = []
    unknown: str | None = None
    for name, value in metrics.items():
        spec = rules.specs.get(name)
        stored_value, out_of_range = _check_value(name, value, spec, loc)
        if out_of_range:
            suspect.append(name)
        if spec is None and not rules.allow_unknown:
            unknown = unknown or name
        stored[field_key(name)] = stored_value
    if unknown is not None:
        return Rejection(index, "unknown-metric", f"metric {unknown!r} is not in the schema")
    if ts < rules.oldest_ok:
        return Rejection(index, "too-old", "older than the retention period")
    doc: dict[str, Any] = {"ts": ts, "meta": rules.meta, "m": stored}
    if suspect:
        doc["quality"] = SUSPECT
        doc["suspect"] = suspect
    return doc


def check_batch(payload: Any, *, rules: Rules, max_batch: int) -> CheckedBatch:
    """Turn a parsed body into reading documents; raise ReadingsInvalid for a bad request."""
    readings, base, batched = _readings_of(payload, max_batch=max_batch)
    errors = _Errors()
    batch = CheckedBatch(base=base, batched=batched)
    for index, reading in enumerate(readings):
        loc = [*base, index] if batched else list(base)
        try:
            checked = check_reading(reading, index, rules=rules, loc=loc)
        except _Invalid as bad:
            errors.add(bad.loc, bad.msg, bad.type, index)
            continue
        if isinstance(checked, Rejection):
            batch.rejected.append(checked)
        else:
            batch.docs.append(checked)
            batch.indexes.append(index)
    if errors.count:
        raise ReadingsInvalid(
            f"{errors.count} invalid reading(s); nothing was stored", errors=errors.items
        )
    batch.require_some()
    return batch


def _readings_of(payload: Any, *, max_batch: int) -> tuple[list[Any], list[Any], bool]:
    """The list of readings in a body (one reading or `{"readings": [...]}`) and its location."""
    if not isinstance(payload, dict):
        raise ReadingsInvalid(
            'the body must be a reading or {"readings": [...]}',
            errors=[{"loc": ["body"], "msg": "must be an object", "type": "type_error"}],
        )
    if "readings" in payload:
        readings = payload["readings"]
        if len(payload) != 1:
            extra = sorted(k for k in payload if k != "readings")[0]
            raise ReadingsInvalid(
                "unknown field next to readings",
                errors=[
                    {"loc": ["body", extra], "msg": "unknown field", "type": "extra_forbidden"}
                ],
            )
        if not isinstance(readings, list) or not readings:
            raise ReadingsInvalid(
                "readings must be a non-empty list",
                errors=[
                    {
                        "loc": ["body", "readings"],
                        "msg": "must be a non-empty list",
                        "type": "list_empty",
                    }
                ],
            )
        if len(readings) > max_batch:
            raise ReadingsInvalid(
                f"at most {max_batch} readings per request",
                errors=[
                    {
                        "loc": ["body", "readings"],
                        "msg": f"at most {max_batch} readings per request, got {len(readings)}",
                        "type": "too_long",
                    }
                ],
            )
        return readings, ["body", "readings"], True
    return [payload], ["body"], False
