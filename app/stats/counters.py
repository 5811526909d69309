"""Readings-per-minute counters kept in Redis, incremented after each ingest flush.

One hash per minute (`stats:rpm:<epoch minute>`, expiring after two hours) holds one field
per scope a caller may ask about, so the statistics read at most 60 small hashes and never
the readings:

- `all` (admins and the master token, unfiltered);
- `f:<folder>` for every folder on the device's path (a folder counts its whole subtree);
- `p:<product>` and `fp:<folder>:<product>` (a product filter, alone or below a folder);
- `d:<device>` (devices a user holds a direct grant on).

A reading counts in the minute it was stored, not the minute of its `ts`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from bson import ObjectId
from odmantic import AIOEngine
from redis.asyncio import Redis

from app.catalog.models import Device
from app.core import db

if TYPE_CHECKING:
    from app.readings.batcher import DeviceFlush

logger = logging.getLogger(__name__)

KEY_PREFIX = "stats:rpm:"
WINDOW_MINUTES = 60
KEY_TTL_S = 2 * 3600

# KEYS: the minute's hash. ARGV: its TTL, then (field, increment) pairs. One command for a
# whole flush: redis-py spends more CPU per command than Redis does running these.
_ADD = """
for i = 2, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""


def minute_of(epoch_s: float) -> int:
    """The epoch minute holding this instant."""
    return int(epoch_s // 60)


def key(minute: int) -> str:
    """The Redis hash of one minute's counters."""
    return f"{KEY_PREFIX}{minute}"


def all_field() -> str:
    """Every device (admins)."""
    return "all"


def folder_field(folder_id: str, product_id: str | None = None) -> str:
    """A folder's subtree, optionally one product within it."""
    return f"f:{folder_id}" if product_id is None else f"fp:{folder_id}:{product_id}"


def product_field(product_id: str) -> str:
    """All devices of a product."""
    return f"p:{product_id}"


def device_field(device_id: str) -> str:
    """One device."""
    return f"d:{device_id}"


def fields_for(*, device_id: str, product_id: str, folder_path: Sequence[str]) -> list[str]:
    """Every counter field a reading of this device increments."""
    fields = [all_field(), device_field(device_id), product_field(product_id)]
    for folder_id in folder_path:
        fields += [folder_field(folder_id), folder_field(folder_id, product_id)]
    return fields


class ReadingCounters:
    """A batcher `FlushListener`: adds each flush's readings to this minute's counters.

    Device folder paths are cached for `path_ttl_s` (a moved device counts under its old
    folders for at most that long); one Redis script call per flush.
    """

    MAX_PATHS = 100_000

    def __init__(self, engine: AIOEngine, redis: Redis, *, path_ttl_s: float = 60.0) -> None:
        self.engine = engine
        self.redis = redis
        self.path_ttl_s = path_ttl_s
        self._paths: dict[str, tuple[float, list[str]]] = {}
        self._add = redis.register_script(_ADD)

    async def __call__(self, flushed: Sequence[DeviceFlush]) -> None:
        """Count what one flush stored."""
        paths = await self._folder_paths(f.device_id for f in flushed)
        counts: Counter[str] = Counter()
        for flush in flushed:
            for name in fields_for(
                device_id=flush.device_id,
                product_id=flush.product_id,
                folder_path=paths.get(flush.device_id, []),
            ):
                counts[name] += len(flush.docs)
        await self.add(counts, now_s=time.time())

    async def add(self, counts: Counter[str], *, now_s: float) -> None:
        """Add the counts to the minute of `now_s`."""
        if not counts:
            return
        args: list[str | int] = [KEY_TTL_S]
        for field_name, n in counts.items():
            args += [field_name, n]
        await self._add(keys=[key(minute_of(now_s))], args=args)

    async def _folder_paths(self, device_ids: Iterable[str]) -> dict[str, list[str]]:
        now = time.monotonic()
        found: dict[str, list[str]] = {}
        missing: list[ObjectId] = []
        for device_id in set(device_ids):
            entry = self._paths.get(device_id)
            if entry is not None and entry[0] > now:
                found[device_id] = entry[1]
            elif ObjectId.is_valid(device_id):
                missing.append(ObjectId(device_id))
        for chunk in db.chunks(missing):
            cursor = db.collection(self.engine, Device).find(
                {"_id": {"$in": chunk}}, {"folder_path": 1}
            )
            async for doc in cursor:
                path = [str(f) for f in doc.get("folder_path") or []]
                found[str(doc["_id"])] = path
                if len(self._paths) >= self.MAX_PATHS:
                    self._paths.clear()
                self._paths[str(doc["_id"])] = (now + self.path_ttl_s, path)
        return found


async def per_minute(
    redis: Redis, fields: Sequence[str], *, now_s: float, minutes: int = WINDOW_MINUTES
) -> list[tuple[int, int]]:
    """(epoch minute, readings summed over `fields`) for the last `minutes`, oldest first."""
    last = minute_of(now_s)
    span = range(last - minutes + 1, last + 1)
    if not fields:
        return [(m, 0) for m in span]
    pipe = redis.pipeline(transaction=False)
    for minute in span:
        pipe.hmget(key(minute), list(fields))
    rows: list[list[Any]] = await pipe.execute()
    return [
        (m, sum(int(v) for v in row if v is not None)) for m, row in zip(span, rows, strict=True)
    ]
