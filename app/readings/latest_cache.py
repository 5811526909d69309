"""Latest values held in Redis beside `device_latest`, so reading them costs no MongoDB read.

MongoDB's `device_latest` stays the source of truth; Redis holds a copy per device (a hash of
`metric key -> "at_ms|json"`, marked complete by a `_ready` field):

* the ingest flush that writes `device_latest` offers the same values to Redis, before any
  reading of that flush is acknowledged, and a value is only ever replaced by a newer one
  (late data never moves it back; the offer runs in Redis as one script call per flush,
  atomic for each device as for the whole flush);
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


def _merge_triples(key: str, first: str, last: str) -> str:
    """Lua that writes the (field, at_ms, json) triples of ARGV[first..last] into the copy
    `key`, each unless the copy already holds a newer value of that field."""
    return f"""
for i = {first}, {last}, 3 do
  local cur = redis.call('HGET', {key}, ARGV[i])
  local at = cur and tonumber(string.match(cur, '^(-?%d+)|'))
  if not at or at < tonumber(ARGV[i + 1]) then
    redis.call('HSET', {key}, ARGV[i], ARGV[i + 1] .. '|' .. ARGV[i + 2])
  end
end
"""


# KEYS: each device's copy and its fill token, in pairs. ARGV: ttl_s, then per device the
# number of its triples and the (field, at_ms, json) triples. A device without a copy gets
# none (its fill token is voided instead). Returns how many copies were offered values.
_OFFER = f"""
local a, offered = 2, 0
for d = 1, #KEYS, 2 do
  local last = a + 3 * tonumber(ARGV[a])
  if redis.call('EXISTS', KEYS[d]) == 0 then
    redis.call('DEL', KEYS[d + 1])
  else
{_merge_triples("KEYS[d]", "a + 1", "last")}
    redis.call('EXPIRE', KEYS[d], ARGV[1])
    offered = offered + 1
  end
  a = last + 1
end
return offered
"""
# Devices per offer call: bounds how long one call holds Redis for a very large flush.
OFFER_CHUNK = 500

# KEYS: the copy, its fill token. ARGV: token, ttl_s, then (field, at_ms, json) triples.
_FILL = f"""
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[2])
{_merge_triples("KEYS[1]", "3", "#ARGV")}
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
        """Offer a flush's newest values per device (after `device_latest` was written).

        One script call per `OFFER_CHUNK` devices (a pipeline of one call per device costs
        the API a client-side command each, and redis-py adds a `SCRIPT EXISTS` round trip to
        every pipeline holding a registered script).
        """
        if not self.enabled or not (newest or self._dirty):
            return
        dirty = set(self._dirty)
        try:
            if dirty:
                await self.redis.delete(*map(_key, dirty))
            offered = [(d, metrics) for d, metrics in newest.items() if d not in dirty]
            for start in range(0, len(offered), OFFER_CHUNK):
                keys: list[str] = []
                args: list[str | int] = [self.ttl_s]
                for device_id, metrics in offered[start : start + OFFER_CHUNK]:
                    keys += [_key(device_id), _fill_key(device_id)]
                    args += [len(metrics), *_triples(metrics)]
                await self._offer(keys=keys, args=args)
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
