"""CSV export of a device's readings: streamed in time order, one column per metric."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

from odmantic import AIOEngine
from pymongo.errors import PyMongoError

from app.readings import queries, repository
from app.readings.context import DeviceContext
from app.readings.models import field_key

logger = logging.getLogger(__name__)


async def columns(
    engine: AIOEngine, *, context: DeviceContext, metrics: Sequence[str] | None
) -> list[str]:
    """The metric columns of an export: the ones asked for, or every known metric."""
    return list(metrics) if metrics else await queries.known_metrics(engine, context, numeric=False)


# The last line of an export that failed after its first bytes were sent (the status, 200, is
# gone by then): a client that sees a line starting with this knows the file is incomplete.
INCOMPLETE_MARKER = "#export-incomplete"


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def stream_csv(
    engine: AIOEngine,
    *,
    device_id: str,
    start: datetime,
    end: datetime,
    columns: Sequence[str],
    rows_per_chunk: int = 500,
    page_size: int = 1000,
) -> AsyncIterator[str]:
    """CSV text chunks (header first): one row per reading, one column per metric.

    A database failure mid-stream ends the body with an `INCOMPLETE_MARKER` line naming the
    time to resume from, never with a file that looks complete.
    """
    keys = [field_key(c) for c in columns]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["ts", *columns, "quality"])
    pending = 1
    last_ts: datetime | None = None
    try:
        async for doc in repository.iter_readings(
            engine, device_id, start=start, end=end, page_size=page_size
        ):
            values = doc.get("m") or {}
            last_ts = doc["ts"]
            writer.writerow(
                [
                    _iso(doc["ts"]),
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
    except PyMongoError as exc:
        logger.warning(
            "export cut short", extra={"device_id": device_id, "error": type(exc).__name__}
        )
        resume = _iso(last_ts if last_ts is not None else start)
        buffer.write(f"{INCOMPLETE_MARKER} database unavailable; resume with start={resume}\n")
        pending += 1
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
