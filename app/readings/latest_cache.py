"""Latest values held in Redis beside `device_latest`, so reading them costs no MongoDB read.

MongoDB's `device_latest` stays the source of truth; Redis holds a copy per device (a hash of
`metric key -> "at_ms|json"`, marked complete by a `_ready` field):

* the ingest flush that writes `device_latest` offers the same values to Redis, before any
  reading of that flush is acknowledged, and a value is only ever replaced by a newer one
  (late data never moves it back; the offer runs in Redis as one script per device);
* a flush never creates a copy: a device without one is read from MongoDB, which fills it
  under a fill token; a flush that finds no copy deletes the token, so a fill that read
  MongoDB before that flush wrote cannot store what it read;
* if the offer fails (Redis away), the flush deletes those copies at its next chance, and
  every copy expires after LATEST_CACHE_S anyway, which bounds how long a value missed that
  way can be served; any Redis error on a read falls back to MongoDB.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from odmantic import AIOEngine
from redis.asyncio import Redis

from app.core.models import epoch_ms
from app.readings import repository

logger = logging.getLogger(__name__)

Doc = dict[str, Any]
PREFIX = "sensorhub:latest:"
READY = "_ready"
FILL_TOKEN_MS = 5000
MAX_DIRTY = 10_000


def _merge_triples(first: int) -> str:
    """Lua that writes the (field, at_ms, json) triples of ARGV from `first` on into the copy
    (KEYS[1]), each unless the copy already holds a newer value of that field."""
    return f"""
for i = {first}, #ARGV, 3 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  local at = cur and tonumber(string.match(cur, '^(-?%d+)|'))
  if not at or at < tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1] .. '|' .. ARGV[i + 2])
  end
end
"""


# KEYS: the copy, its fill token. ARGV: ttl_s, then (field, at_ms, json) triples.
_OFFER = f"""
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2])
  return 0
end
{_merge_triples(2)}
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""

# KEYS: the copy, its fill token. ARGV: token, ttl_s, then (field, at_ms, json) triples.
_FILL = f"""
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[2])
{_merge_triples(3)}
redis.call('HSET', KEYS[1], '_ready', '1')
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


def _key(device_id: str) -> str:
    return PREFIX + device_id


def _fill_key(device_id: str) -> str:
    return PREFIX + "fill:" + device_id


def _encode(entry: Mapping[str, Any]) -> tuple[int, str]:
    at = epoch_ms(entry["ts"])
    body: Doc = {"v": entry["v"]}
    if entry.get("suspect"):
        body["s"] = True
    return at, json.dumps(body, separators=(",", ":"))


def _decode(raw: str) -> Doc:
    at, _, body = raw.partition("|")
    data = json.loads(body)
    entry: Doc = {"ts": datetime.fromtimestamp(int(at) / 1000, tz=UTC), "v": data["v"]}
    if data.get("s"):
        entry["suspect"] = True
    return entry


def _triples(metrics: Mapping[str, Mapping[str, Any]]) -> list[str | int]:
    args: list[str | int] = []
    for key, entry in metrics.items():
        at, body = _encode(entry)
        args += [key, at, body]
    return args


class LatestValues:
    """The Redis copies of `device_latest` (see the module)."""

    def __init__(self, redis: Redis, *, ttl_s: float) -> None:
        self.redis = redis
        self.ttl_s = max(1, int(ttl_s))
        self.enabled = ttl_s > 0
        self._offer = redis.register_script(_OFFER)
        self._fill = redis.register_script(_FILL)
        self._dirty: set[str] = set()

    async def offer(self, newest: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> None:
        """Offer a flush's newest values per device (after `device_latest` was written)."""
        if not self.enabled or not (newest or self._dirty):
            return
        dirty = set(self._dirty)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                if dirty:
                    pipe.delete(*map(_key, dirty))
                for device_id, metrics in newest.items():
                    if device_id in dirty:
                        continue
                    await self._offer(
                        keys=[_key(device_id), _fill_key(device_id)],
                        args=[self.ttl_s, *_triples(metrics)],
                        client=pipe,
                    )
                await pipe.execute()
            self._dirty -= dirty
        except Exception as exc:
            # These copies may now be older than MongoDB: drop them as soon as Redis answers.
            if len(self._dirty) < MAX_DIRTY:
                self._dirty.update(newest)
            logger.warning("latest values not copied to Redis", extra={"error": type(exc).__name__})

    async def read(self, engine: AIOEngine, device_id: str) -> Doc | None:
        """The device's latest values (`device_latest`'s shape): from Redis, else MongoDB."""
        if not self.enabled:
            return await repository.read_latest(engine, device_id)
        try:
            raw: dict[bytes | str, bytes | str] = await self.redis.hgetall(_key(device_id))
        except Exception:
            return await repository.read_latest(engine, device_id)
        fields = {_text(k): _text(v) for k, v in raw.items()}
        if READY in fields:
            return {"m": {k: _decode(v) for k, v in fields.items() if k != READY}}
        return await self._fill_from_mongo(engine, device_id)

    async def _fill_from_mongo(self, engine: AIOEngine, device_id: str) -> Doc | None:
        token = uuid.uuid4().hex
        try:
            await self.redis.set(_fill_key(device_id), token, px=FILL_TOKEN_MS)
        except Exception:
            return await repository.read_latest(engine, device_id)
        doc = await repository.read_latest(engine, device_id)
        metrics = (doc or {}).get("m") or {}
        try:
            await self._fill(
                keys=[_key(device_id), _fill_key(device_id)],
                args=[token, self.ttl_s, *_triples(metrics)],
            )
        except Exception as exc:
            logger.warning("latest values not filled", extra={"error": type(exc).__name__})
        return doc


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
