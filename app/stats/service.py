"""Fleet statistics over what the caller can see, from indexed counts and Redis counters.

What a user sees of the devices is the union of two parts (the same as the permission
filter): the subtrees of the folders they hold grants on, and devices shared with them
directly. The first is counted by the server with two `$group`s matching on strings and the
integer `presence.last_seen_ms`; the second is bounded by the user's grants and counted here,
so no query puts ObjectIds or date ranges inside an aggregation (mongo-compat.md, rows 1-2).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from odmantic import AIOEngine
from redis.asyncio import Redis

from app.auth.principal import Principal
from app.catalog import crud, presence
from app.catalog.models import Device, Folder
from app.catalog.permissions.models import Grant, ResourceType
from app.catalog.presence import DeviceStatus
from app.core import db
from app.stats import counters, devices
from app.stats.devices import DeviceCounters
from app.stats.schemas import FleetStats, MinuteCount, ProductCount

Doc = dict[str, Any]

# Severities reported even when zero, most severe first (the alerts domain's).
SEVERITIES = ("critical", "major", "minor", "warning", "info")

AlarmCounter = Callable[..., Awaitable[dict[str, int]]]
"""`(engine, *, principal, folder_id, product_id) -> {severity: active alarms}`."""


async def no_alarms(
    engine: AIOEngine, *, principal: Principal, folder_id: str | None, product_id: str | None
) -> dict[str, int]:
    """The alarm counter used until an alerts domain provides one."""
    return {}


@dataclass(frozen=True, slots=True)
class Scope:
    """What of the fleet the caller sees, within the filters.

    `folders` are subtree roots none of which lies below another (None: every device);
    `direct` are devices shared directly that lie outside those subtrees.
    """

    folders: list[str] | None
    direct: list[Doc]


async def fleet(
    engine: AIOEngine,
    redis: Redis,
    *,
    principal: Principal,
    folder_id: str | None,
    product_id: str | None,
    offline_after_s: int,
    alarm_counter: AlarmCounter,
    device_counters: DeviceCounters | None = None,
    cache_s: float = 0.0,
) -> FleetStats:
    """The statistics of the devices the caller can see below `folder_id`, of `product_id`."""
    await crud.require_visible_folder(engine, principal=principal, folder_id=folder_id)
    scope = await _scope(engine, principal=principal, folder_id=folder_id, product_id=product_id)
    now = datetime.now(UTC)
    (statuses, products, newest), rates, alarms = await asyncio.gather(
        _cached_counts(
            engine,
            redis,
            scope,
            product_id=product_id,
            now=now,
            offline_s=offline_after_s,
            cache_s=cache_s,
            counters=device_counters,
        ),
        counters.per_minute(
            redis, _counter_fields(scope, product_id=product_id), now_s=now.timestamp()
        ),
        alarm_counter(engine, principal=principal, folder_id=folder_id, product_id=product_id),
    )
    return FleetStats(
        devices_total=sum(statuses.values()),
        devices_by_status={s.value: statuses.get(s, 0) for s in DeviceStatus},
        devices_by_product=[
            ProductCount(product_id=p, devices=n) for p, n in sorted(products.items())
        ],
        readings_per_minute=[
            MinuteCount(minute_at=datetime.fromtimestamp(m * 60, UTC), readings=n) for m, n in rates
        ],
        active_alarms_by_severity={s: alarms.get(s, 0) for s in (*SEVERITIES, *alarms)},
        last_seen_at=newest,
        generated_at=now,
    )


async def _scope(
    engine: AIOEngine, *, principal: Principal, folder_id: str | None, product_id: str | None
) -> Scope:
    if folder_id is not None:
        return Scope(folders=[folder_id], direct=[])
    if principal.is_admin:
        return Scope(folders=None, direct=[])
    folders: list[str] = []
    device_ids: list[ObjectId] = []
    if principal.is_device and principal.device_id:
        device_ids.append(ObjectId(principal.device_id))
    elif principal.is_user:
        cursor = db.collection(engine, Grant).find(
            {"user_uid": principal.uid}, {"resource_type": 1, "resource_id": 1}
        )
        async for grant in cursor:
            if grant["resource_type"] == ResourceType.FOLDER:
                folders.append(grant["resource_id"])
            elif grant["resource_type"] == ResourceType.DEVICE:
                device_ids.append(ObjectId(grant["resource_id"]))
    roots = await _subtree_roots(engine, folders)
    granted = set(folders)
    direct: list[Doc] = []
    for chunk in db.chunks(device_ids):
        cursor = db.collection(engine, Device).find(
            {"_id": {"$in": chunk}}, {"folder_path": 1, "product_id": 1, "presence": 1}
        )
        async for doc in cursor:
            if granted.intersection(doc.get("folder_path") or []):
                continue  # already counted with its folder
            if product_id is None or doc.get("product_id") == product_id:
                direct.append(doc)
    return Scope(folders=roots, direct=direct)


async def _subtree_roots(engine: AIOEngine, folder_ids: list[str]) -> list[str]:
    """The granted folders that lie below no other granted folder (no device counted twice)."""
    granted = set(folder_ids)
    roots: list[str] = []
    oids = [ObjectId(f) for f in granted if ObjectId.is_valid(f)]
    for chunk in db.chunks(oids):
        cursor = db.collection(engine, Folder).find({"_id": {"$in": chunk}}, {"ancestors": 1})
        async for doc in cursor:
            if not granted.intersection(doc.get("ancestors") or []):
                roots.append(str(doc["_id"]))
    return sorted(roots)


def _counter_fields(scope: Scope, *, product_id: str | None) -> list[str]:
    fields = [str(d["_id"]) for d in scope.direct]
    names = [counters.device_field(d) for d in fields]
    if scope.folders is None:
        names.append(
            counters.all_field() if product_id is None else counters.product_field(product_id)
        )
    else:
        names += [counters.folder_field(f, product_id) for f in scope.folders]
    return names


CACHE_PREFIX = "stats:devices:"


def _cache_key(scope: Scope, *, product_id: str | None) -> str:
    """The same visible devices and filters give the same key (whoever asks)."""
    parts = {
        "folders": scope.folders,
        "direct": sorted(str(d["_id"]) for d in scope.direct),
        "product": product_id,
    }
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]
    return CACHE_PREFIX + digest


async def _cached_counts(
    engine: AIOEngine,
    redis: Redis,
    scope: Scope,
    *,
    product_id: str | None,
    now: datetime,
    offline_s: int,
    cache_s: float,
    counters: DeviceCounters | None = None,
) -> tuple[Counter[DeviceStatus], Counter[str], datetime | None]:
    """`_device_counts`, reused for `cache_s` seconds by every caller with the same scope."""
    key = _cache_key(scope, product_id=product_id) if cache_s > 0 else None
    if key is not None:
        cached = await redis.get(key)
        if cached:
            data = json.loads(cached)
            newest = datetime.fromisoformat(data["newest"]) if data["newest"] else None
            statuses = Counter({DeviceStatus(k): v for k, v in data["statuses"].items()})
            return statuses, Counter(data["products"]), newest
    if counters is not None and await counters.built():
        statuses, products, newest = await _maintained_counts(
            counters, scope, product_id=product_id, now=now, offline_s=offline_s
        )
    else:
        statuses, products, newest = await _device_counts(
            engine, scope, product_id=product_id, now=now, offline_s=offline_s
        )
    if key is not None:
        data = {
            "statuses": {k.value: v for k, v in statuses.items()},
            "products": dict(products),
            "newest": newest.isoformat() if newest else None,
        }
        await redis.set(key, json.dumps(data), px=int(cache_s * 1000))
    return statuses, products, newest


async def _maintained_counts(
    counters: DeviceCounters,
    scope: Scope,
    *,
    product_id: str | None,
    now: datetime,
    offline_s: int,
) -> tuple[Counter[DeviceStatus], Counter[str], datetime | None]:
    """From the maintained per-scope counters (app/stats/devices.py): a few Redis reads per
    subtree root, whatever the number of devices; directly shared devices as they are."""
    statuses: Counter[DeviceStatus] = Counter()
    products: Counter[str] = Counter()
    newest: datetime | None = None
    roots: list[str | None] = [None] if scope.folders is None else list(scope.folders)
    if roots:
        counts = await counters.read(
            [devices.scope_key(folder_id=f, product_id=product_id) for f in roots],
            product_id=product_id,
            cutoff_ms=presence.epoch_ms(now) - offline_s * 1000,
        )
        statuses[DeviceStatus.ERROR] += counts.error
        statuses[DeviceStatus.ONLINE] += counts.recent - counts.error
        statuses[DeviceStatus.OFFLINE] += counts.total - counts.recent
        products.update(counts.products)
        if counts.newest_ms:
            newest = datetime.fromtimestamp(counts.newest_ms / 1000, UTC)
    _add_direct(scope, statuses, products, now=now, offline_s=offline_s)
    for doc in scope.direct:
        newest = _later(newest, presence.parse(doc.get("presence")).last_seen_at)
    return statuses, products, newest


def _add_direct(
    scope: Scope,
    statuses: Counter[DeviceStatus],
    products: Counter[str],
    *,
    now: datetime,
    offline_s: int,
) -> None:
    for doc in scope.direct:
        raw = doc.get("presence")
        statuses[presence.derive_status(raw, now=now, offline_after_s=offline_s)] += 1
        products[str(doc.get("product_id"))] += 1


async def _device_counts(
    engine: AIOEngine, scope: Scope, *, product_id: str | None, now: datetime, offline_s: int
) -> tuple[Counter[DeviceStatus], Counter[str], datetime | None]:
    statuses: Counter[DeviceStatus] = Counter()
    products: Counter[str] = Counter()
    newest: datetime | None = None
    if scope.folders is None or scope.folders:
        clauses: list[Doc] = []
        if scope.folders is not None:
            clauses.append(db.in_chunks("folder_path", scope.folders))
        if product_id is not None:
            clauses.append({"product_id": product_id})
        recent = presence.recent_ms_filter(now=now, offline_after_s=offline_s)
        collection = db.collection(engine, Device)

        def grouped(match: list[Doc], key: str, **more: Doc) -> Any:
            where = {"$and": match} if match else {}
            group = {"_id": key, "n": {"$sum": 1}, **more}
            return collection.aggregate([{"$match": where}, {"$group": group}]).to_list(None)

        # Two grouped aggregations on strings and integers (each one pass over an index
        # range on real MongoDB; count_documents' constant group is far slower embedded).
        by_product, recent_by_status = await asyncio.gather(
            grouped(clauses, "$product_id", seen={"$max": "$presence.last_seen_ms"}),
            grouped([*clauses, recent], "$presence.reported_status"),
        )
        total = 0
        for group in by_product:
            products[str(group["_id"])] += int(group["n"])
            total += int(group["n"])
            if isinstance(group.get("seen"), int | float):
                newest = _later(newest, datetime.fromtimestamp(group["seen"] / 1000, UTC))
        live = 0
        for group in recent_by_status:
            status = DeviceStatus.ERROR if group["_id"] == "error" else DeviceStatus.ONLINE
            statuses[status] += int(group["n"])
            live += int(group["n"])
        statuses[DeviceStatus.OFFLINE] += total - live
    for doc in scope.direct:
        raw = doc.get("presence")
        statuses[presence.derive_status(raw, now=now, offline_after_s=offline_s)] += 1
        products[str(doc.get("product_id"))] += 1
        newest = _later(newest, presence.parse(raw).last_seen_at)
    return statuses, products, newest


def _later(current: datetime | None, value: object) -> datetime | None:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        return current
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value if current is None or value > current else current
