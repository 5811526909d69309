"""Device counts per scope, maintained in Redis: by status and by product, never a scan.

Every scope a caller may ask about is a pair of sorted sets of device ids, scored by the
device's last-seen time in epoch milliseconds:

- scopes: `all`, `p:<product>`, `f:<folder>` (a folder's whole subtree) and
  `fp:<folder>:<product>`, for each folder on the device's path;
- `seen:<scope>` holds every device of the scope (score 0: never seen), so the total is a
  `ZCARD` and the devices seen within `DEVICE_OFFLINE_AFTER_S` a `ZCOUNT`;
- `err:<scope>` holds the devices whose last reported status is `error`;
- `prod:all` and `prod:f:<folder>` list the products met in a scope (a product whose count
  fell to 0 is skipped when read, and dropped by the recount);
- `in:<device>` remembers the scopes a device was put in.

Correctness: each device is written by one Lua script (atomic in Redis) from its stored
document, read after the catalog change was written, so applying it twice changes nothing,
and a move takes the device out of the scopes it left. Ingest only raises the last-seen
scores (`GT`). What can still go wrong (a crash between the MongoDB write and the script, or
writes that bypass the API) is repaired by `recount`, which the worker's beat runs every
`STATS_RECOUNT_INTERVAL_S`; until a first recount has run (`built` is missing, e.g. a Redis
flush) the statistics are computed with indexed queries instead.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bson import ObjectId
from odmantic import AIOEngine
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.catalog.models import Device
from app.core import collections, db

if TYPE_CHECKING:
    from pymongo.database import Database

    from app.readings.batcher import DeviceFlush

logger = logging.getLogger(__name__)

PREFIX = "stats:dev:"
BUILT = f"{PREFIX}built"
_PROJECTION = {"folder_path": 1, "product_id": 1, "presence": 1}

# Put a device in exactly the scopes of ARGV[3] (`{"s": scopes, "ps": product sets, "p":
# product}`; no scopes: remove it), scored ARGV[4], in the error sets when ARGV[5] is "1".
_SYNC = """
local p, id = ARGV[1], ARGV[2]
local new = cjson.decode(ARGV[3])
local seen, err = tonumber(ARGV[4]), ARGV[5] == "1"
local mkey = p .. "in:" .. id
local keep = {}
for _, s in ipairs(new.s) do keep[s] = true end
local old = redis.call("GET", mkey)
if old then
  for _, s in ipairs(cjson.decode(old)) do
    if not keep[s] then
      redis.call("ZREM", p .. "seen:" .. s, id)
      redis.call("ZREM", p .. "err:" .. s, id)
    end
  end
end
for _, s in ipairs(new.s) do
  redis.call("ZADD", p .. "seen:" .. s, seen, id)
  if err then
    redis.call("ZADD", p .. "err:" .. s, seen, id)
  else
    redis.call("ZREM", p .. "err:" .. s, id)
  end
end
for _, k in ipairs(new.ps) do redis.call("SADD", p .. "prod:" .. k, new.p) end
if #new.s == 0 then redis.call("DEL", mkey) else redis.call("SET", mkey, cjson.encode(new.s)) end
return 1
"""

# Ingest heard from a device at ARGV[3]: raise its scores (0 when it is not counted yet).
_TOUCH = """
local p, id = ARGV[1], ARGV[2]
local old = redis.call("GET", p .. "in:" .. id)
if not old then return 0 end
for _, s in ipairs(cjson.decode(old)) do
  redis.call("ZADD", p .. "seen:" .. s, "GT", ARGV[3], id)
  redis.call("ZADD", p .. "err:" .. s, "XX", "GT", ARGV[3], id)
end
return 1
"""


def scopes_of(*, product_id: str, folder_path: Sequence[str]) -> list[str]:
    """Every scope a device of this product at this path counts in."""
    scopes = ["all", f"p:{product_id}"]
    for folder_id in folder_path:
        scopes += [f"f:{folder_id}", f"fp:{folder_id}:{product_id}"]
    return scopes


def scope_key(*, folder_id: str | None, product_id: str | None) -> str:
    """The scope of a folder subtree (None: every device), optionally of one product."""
    if folder_id is None:
        return "all" if product_id is None else f"p:{product_id}"
    return f"f:{folder_id}" if product_id is None else f"fp:{folder_id}:{product_id}"


def _seen_ms(raw: dict[str, Any] | None) -> int:
    if not raw:
        return 0
    value = raw.get("last_seen_ms")
    if isinstance(value, int | float):
        return int(value)
    seen = raw.get("last_seen_at")
    return int(seen.timestamp() * 1000) if isinstance(seen, datetime) else 0


def sync_args(device_id: str, doc: dict[str, Any] | None) -> list[Any]:
    """The SYNC script's arguments for a device's stored document (None: it is gone)."""
    if doc is None:
        spec: dict[str, Any] = {"s": [], "ps": [], "p": ""}
        return [PREFIX, device_id, json.dumps(spec), 0, "0"]
    product_id = str(doc.get("product_id") or "")
    path = [str(f) for f in doc.get("folder_path") or []]
    spec = {
        "s": scopes_of(product_id=product_id, folder_path=path),
        "ps": ["all", *(f"f:{f}" for f in path)],
        "p": product_id,
    }
    raw = doc.get("presence")
    err = "1" if raw and raw.get("reported_status") == "error" else "0"
    return [PREFIX, device_id, json.dumps(spec), _seen_ms(raw), err]


@dataclass(frozen=True, slots=True)
class ScopeCounts:
    """Devices of one scope: total, seen recently, in error recently, per product, newest."""

    total: int
    recent: int
    error: int
    products: dict[str, int]
    newest_ms: int


class DeviceCounters:
    """The API side: keeps the counters right after catalog changes and ingest, reads them."""

    def __init__(self, engine: AIOEngine, redis: Redis, *, touch_every_s: float) -> None:
        self.engine = engine
        self.redis = redis
        self.touch_every_s = touch_every_s
        self._sync = redis.register_script(_SYNC)
        self._touch = redis.register_script(_TOUCH)
        self._touched: dict[str, float] = {}

    async def changed(
        self, *, device_ids: Iterable[str] = (), folder_ids: Iterable[str] = ()
    ) -> None:
        """After a catalog write: re-count the devices named, and those below the folders
        (as stored now, and as counted before: a device moved or deleted away is found)."""
        try:
            ids = {d for d in device_ids if ObjectId.is_valid(d)}
            for folder_id in folder_ids:
                members = await self.redis.zrange(f"{PREFIX}seen:f:{folder_id}", 0, -1)
                ids.update(m.decode() if isinstance(m, bytes) else str(m) for m in members)
                cursor = db.collection(self.engine, Device).find(
                    {"folder_path": folder_id}, {"_id": 1}
                )
                ids.update([str(doc["_id"]) async for doc in cursor])
            await self.sync(sorted(ids))
        except Exception:  # the request succeeded; the recount mends what this missed
            logger.exception("device counters not updated")

    async def sync(self, device_ids: Sequence[str]) -> None:
        """Write each device's counters from its stored document."""
        for chunk in db.chunks(list(device_ids)):
            docs: dict[str, dict[str, Any]] = {}
            cursor = db.collection(self.engine, Device).find(
                {"_id": {"$in": [ObjectId(d) for d in chunk]}}, _PROJECTION
            )
            async for doc in cursor:
                docs[str(doc["_id"])] = doc
            async with self.redis.pipeline(transaction=False) as pipe:
                for device_id in chunk:
                    await self._sync(
                        keys=[], args=sync_args(device_id, docs.get(device_id)), client=pipe
                    )
                await pipe.execute()

    async def __call__(self, flushed: Sequence[DeviceFlush]) -> None:
        """A batcher `FlushListener`: devices that posted are seen now (at most every
        `touch_every_s` per device, as ingest refreshes the stored presence)."""
        mono = time.monotonic()
        due = []
        for group in flushed:
            last = self._touched.get(group.device_id)
            if last is None or mono - last >= self.touch_every_s:
                due.append(group.device_id)
        if not due:
            return
        if len(self._touched) > 100_000:
            self._touched.clear()
        for device_id in due:
            self._touched[device_id] = mono
        now_ms = int(time.time() * 1000)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for device_id in due:
                    await self._touch(keys=[], args=[PREFIX, device_id, now_ms], client=pipe)
                found = await pipe.execute()
            unknown = [d for d, ok in zip(due, found, strict=True) if not ok]
            if unknown:  # created before the counters were built: count them now
                await self.sync(unknown)
        except RedisError as exc:
            logger.warning("device counters not touched", extra={"error": str(exc)})

    async def built(self) -> bool:
        """Whether a recount has built the counters (else the statistics query instead)."""
        return bool(await self.redis.exists(BUILT))

    async def read(
        self, scopes: Sequence[str], *, product_id: str | None, cutoff_ms: int
    ) -> ScopeCounts:
        """Counts summed over disjoint scopes (`scope_key` of each subtree root)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for scope in scopes:
                pipe.zcard(f"{PREFIX}seen:{scope}")
                pipe.zcount(f"{PREFIX}seen:{scope}", cutoff_ms, "+inf")
                pipe.zcount(f"{PREFIX}err:{scope}", cutoff_ms, "+inf")
                pipe.zrange(f"{PREFIX}seen:{scope}", -1, -1, withscores=True)
                if product_id is None:
                    pipe.smembers(f"{PREFIX}prod:{scope}")
            rows = await pipe.execute()
        total = recent = error = newest = 0
        per_scope_products: list[tuple[str, list[str]]] = []
        step = 4 if product_id is not None else 5
        for i, scope in enumerate(scopes):
            card, rec, err, top, *more = rows[i * step : (i + 1) * step]
            total, recent, error = total + int(card), recent + int(rec), error + int(err)
            if top:
                newest = max(newest, int(top[0][1]))
            if more:
                names = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in more[0])
                per_scope_products.append((scope, names))
        products: dict[str, int] = {}
        if product_id is not None:
            if total:
                products[product_id] = total
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                for scope, names in per_scope_products:
                    for name in names:
                        pipe.zcard(f"{PREFIX}seen:{_with_product(scope, name)}")
                cards = iter(await pipe.execute())
            for _scope, names in per_scope_products:
                for name in names:
                    n = int(next(cards))
                    if n:
                        products[name] = products.get(name, 0) + n
        return ScopeCounts(total, recent, error, products, newest)


def _with_product(scope: str, product_id: str) -> str:
    return f"p:{product_id}" if scope == "all" else f"fp:{scope[2:]}:{product_id}"


def recount(
    database: Database[dict[str, Any]], redis: SyncRedis, *, batch: int = 500
) -> dict[str, int]:
    """Rebuild every device's counters from MongoDB (idempotent; the beat runs it).

    Devices are re-synced from their stored documents, devices counted but gone are taken
    out, products whose count fell to 0 leave their scope's list, then `built` is set.

    The API keeps syncing devices while this runs, so a device created, moved or deleted
    after it was listed here could be written back as it was listed (or taken out though it
    now exists). After each batch the batch's devices are read again, and those whose stored
    document is not what was written are written once more, as they are now.
    """
    sync = redis.register_script(_SYNC)
    devices = database[collections.DEVICES]
    seen: set[str] = set()
    pending: list[tuple[str, dict[str, Any] | None]] = []
    removed = 0

    def write(entries: Sequence[tuple[str, dict[str, Any] | None]]) -> None:
        pipe = redis.pipeline(transaction=False)
        for device_id, doc in entries:
            sync(keys=[], args=sync_args(device_id, doc), client=pipe)
        pipe.execute()

    def flush() -> None:
        nonlocal removed
        if not pending:
            return
        write(pending)
        ids = [ObjectId(d) for d, _ in pending if ObjectId.is_valid(d)]
        stored = {str(d["_id"]): d for d in devices.find({"_id": {"$in": ids}}, _PROJECTION)}
        write([(d, stored.get(d)) for d, doc in pending if stored.get(d) != doc])
        removed += sum(1 for d, doc in pending if doc is None and d not in stored)
        pending.clear()

    for doc in devices.find({}, _PROJECTION):
        device_id = str(doc["_id"])
        seen.add(device_id)
        pending.append((device_id, doc))
        if len(pending) >= batch:
            flush()
    flush()
    for raw in redis.scan_iter(match=f"{PREFIX}in:*", count=1000):
        device_id = (raw.decode() if isinstance(raw, bytes) else str(raw))[len(PREFIX) + 3 :]
        if device_id not in seen:
            pending.append((device_id, None))
            if len(pending) >= batch:
                flush()
    flush()
    dropped = 0
    for raw in redis.scan_iter(match=f"{PREFIX}prod:*", count=1000):
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        scope = key[len(PREFIX) + 5 :]
        for member in redis.smembers(key):
            name = member.decode() if isinstance(member, bytes) else str(member)
            if not redis.zcard(f"{PREFIX}seen:{_with_product(scope, name)}"):
                dropped += int(redis.srem(key, name))
    redis.set(BUILT, str(int(time.time())))
    return {"devices": len(seen), "removed": removed, "products_dropped": dropped}
