"""Time buckets for aggregates: parse the interval, plan the database grouping, fold it back.

The database groups readings by a fixed step from an aligned origin (`$dateDiff` in seconds,
portable per mongo-compat.md). Fixed intervals (`Ns`, `Nm`, `Nh`) are that step. Calendar
intervals (`Nd`, `Nw`, `Nmo`) start at local midnight in `tz`: their boundaries are computed
here with zoneinfo (so they move with daylight-saving changes), the database groups by the
largest step that divides every boundary (a day when the offset does not change in the range,
else an hour, or 15 minutes for zones with such offsets), and the groups are folded into the
buckets here. Folding is exact because every function folds: avg from sum and count, first and
last from their times.
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.readings.exceptions import QueryInvalid

_INTERVAL = re.compile(r"^([1-9][0-9]{0,5})(s|m|h|d|w|mo)$")
_FIXED_SECONDS = {"s": 1, "m": 60, "h": 3600}
_STEPS = (86_400, 3_600, 900, 60, 1)
MAX_GROUPS = 500_000


@dataclass(frozen=True, slots=True)
class Interval:
    """A parsed interval: `count` units of `unit`."""

    count: int
    unit: str

    @property
    def fixed_seconds(self) -> int | None:
        """Length in seconds of a fixed interval; None for calendar ones (d, w, mo)."""
        per = _FIXED_SECONDS.get(self.unit)
        return None if per is None else per * self.count


@dataclass(frozen=True, slots=True)
class Plan:
    """Bucket boundaries (UTC; bucket i is [bounds[i], bounds[i+1])) and the database step."""

    origin: datetime
    step_s: int
    bounds: list[datetime]

    @property
    def bucket_count(self) -> int:
        """How many buckets the range spans."""
        return len(self.bounds) - 1


def parse_interval(value: str) -> Interval:
    """`15m`, `1h`, `1d`, `1w`, `1mo` ...; 422 otherwise."""
    match = _INTERVAL.fullmatch(value)
    if match is None:
        raise QueryInvalid(
            "interval must be a count and a unit: s, m, h, d, w or mo (e.g. 5m, 1h, 1d, 1mo)"
        )
    return Interval(count=int(match.group(1)), unit=match.group(2))


def parse_tz(name: str) -> ZoneInfo:
    """An IANA time zone; 422 for an unknown name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise QueryInvalid(f"unknown time zone {name[:64]!r}") from None


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def _add_months(day: date, months: int) -> date:
    total = day.year * 12 + day.month - 1 + months
    return date(total // 12, total % 12 + 1, 1)


def plan(
    interval: Interval, *, start: datetime, end: datetime, tz: ZoneInfo, max_buckets: int
) -> Plan:
    """The buckets covering [start, end); 422 when there would be more than `max_buckets`."""
    try:
        return _plan(interval, start=start, end=end, tz=tz, max_buckets=max_buckets)
    except (OverflowError, ValueError):
        # Calendar arithmetic past year 9999 (a far zone offset or a huge interval).
        raise QueryInvalid("the buckets would end outside years 1 to 9999") from None


def _plan(
    interval: Interval, *, start: datetime, end: datetime, tz: ZoneInfo, max_buckets: int
) -> Plan:
    first_day = start.astimezone(tz).date()
    fixed = interval.fixed_seconds
    too_many = QueryInvalid(
        f"the range spans more than {max_buckets} buckets of {interval.count}{interval.unit}; "
        "use a longer interval or a shorter range"
    )
    if fixed is not None:
        origin = _local_midnight(first_day, tz)
        first = math.floor((start - origin).total_seconds() / fixed)
        last = math.ceil((end - origin).total_seconds() / fixed)
        if last - first > max_buckets:
            raise too_many
        base = origin + timedelta(seconds=first * fixed)
        bounds = [base + timedelta(seconds=i * fixed) for i in range(last - first + 1)]
        return Plan(origin=base, step_s=fixed, bounds=bounds)
    if interval.unit == "d":
        day, step_days = first_day, interval.count
    elif interval.unit == "w":
        day, step_days = first_day - timedelta(days=first_day.weekday()), 7 * interval.count
    else:
        day, step_days = first_day.replace(day=1), 0
    bounds = [_local_midnight(day, tz)]
    while bounds[-1] < end:
        if len(bounds) > max_buckets:
            raise too_many
        day = _add_months(day, interval.count) if step_days == 0 else day + timedelta(step_days)
        bounds.append(_local_midnight(day, tz))
    origin = bounds[0]
    offsets = [int((b - origin).total_seconds()) for b in bounds]
    step = next(s for s in _STEPS if all(o % s == 0 for o in offsets))
    if (end - start).total_seconds() / step > MAX_GROUPS:
        raise QueryInvalid("the range is too long for this interval and time zone")
    return Plan(origin=origin, step_s=step, bounds=bounds)


@dataclass(slots=True)
class _Acc:
    total: float = 0.0
    count: int = 0
    low: float | None = None
    high: float | None = None
    first: tuple[datetime, float] | None = None
    last: tuple[datetime, float] | None = None

    def add(self, row: dict[str, Any]) -> None:
        self.total += float(row["sum"])
        self.count += int(row["n"])
        self.low = row["min"] if self.low is None else min(self.low, row["min"])
        self.high = row["max"] if self.high is None else max(self.high, row["max"])
        if self.first is None or row["first_ts"] < self.first[0]:
            self.first = (row["first_ts"], row["first"])
        if self.last is None or row["last_ts"] >= self.last[0]:
            self.last = (row["last_ts"], row["last"])

    def value(self, function: str) -> float | int | None:
        if function == "count":
            return self.count
        if self.count == 0:
            return None
        if function == "avg":
            return self.total / self.count
        if function == "sum":
            return self.total
        if function == "min":
            return self.low
        if function == "max":
            return self.high
        if function == "first":
            return None if self.first is None else self.first[1]
        return None if self.last is None else self.last[1]


def fold(
    rows: list[dict[str, Any]],
    *,
    layout: Plan,
    names: dict[str, str],
    functions: list[str],
    fill: bool,
) -> list[dict[str, Any]]:
    """Buckets with the requested functions per metric, from the database's step groups."""
    accs: dict[int, dict[str, _Acc]] = {}
    for row in rows:
        key, _, index = str(row["_id"]).rpartition("|")
        name = names.get(key)
        if name is None:
            continue
        at = layout.origin + timedelta(seconds=int(float(index)) * layout.step_s)
        bucket = bisect.bisect_right(layout.bounds, at) - 1
        if not 0 <= bucket < layout.bucket_count:
            continue
        accs.setdefault(bucket, {}).setdefault(name, _Acc()).add(row)
    buckets = []
    empty = _Acc()
    for i in range(layout.bucket_count):
        per_metric = accs.get(i)
        if per_metric is None and not fill:
            continue
        values = {
            name: {f: (per_metric or {}).get(name, empty).value(f) for f in functions}
            for name in names.values()
        }
        buckets.append({"start": layout.bounds[i], "end": layout.bounds[i + 1], "values": values})
    return buckets
