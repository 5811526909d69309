"""CSV export of a device's readings: streamed in time order, one column per metric."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

from odmantic import AIOEngine

from app.readings import queries, repository
from app.readings.context import DeviceContext
from app.readings.models import field_key


async def columns(
    engine: AIOEngine, *, context: DeviceContext, metrics: Sequence[str] | None
) -> list[str]:
    """The metric columns of an export: the ones asked for, or every known metric."""
    return list(metrics) if metrics else await queries.known_metrics(engine, context, numeric=False)


async def stream_csv(
    engine: AIOEngine,
    *,
    device_id: str,
    start: datetime,
    end: datetime,
    columns: Sequence[str],
    rows_per_chunk: int = 500,
) -> AsyncIterator[str]:
    """CSV text chunks (header first): one row per reading, one column per metric."""
    keys = [field_key(c) for c in columns]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["ts", *columns, "quality"])
    pending = 1
    async for doc in repository.iter_readings(engine, device_id, start=start, end=end):
        values = doc.get("m") or {}
        ts: datetime = doc["ts"]
        writer.writerow(
            [
                ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                *(_csv_value(values.get(k)) for k in keys),
                doc.get("quality") or "",
            ]
        )
        pending += 1
        if pending >= rows_per_chunk:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    if pending:
        yield buffer.getvalue()


# A spreadsheet runs a cell starting with one of these as a formula (OWASP, CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return repr(value)
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        # Device strings are data: a leading apostrophe keeps `=HYPERLINK(...)` a string.
        return "'" + value
    return value
