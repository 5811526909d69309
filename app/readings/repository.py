"""The readings domain's MongoDB I/O, in the forms that work on both servers.

`readings`, `device_latest` and `idempotency_keys` are raw collections written through motor
(the hot path skips ODMantic); their shapes are described in `app.readings.models`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from odmantic import AIOEngine
from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from app.core.collections import DEVICE_LATEST, IDEMPOTENCY_KEYS, READINGS
from app.core.db import chunks, database
from app.core.models import bucket_index_expr, epoch_ms

logger = logging.getLogger(__name__)

Doc = dict[str, Any]


# --- readings ----------------------------------------------------------------------------------


async def insert_readings(engine: AIOEngine, docs: list[Doc]) -> None:
    """One unordered `insert_many` (raises BulkWriteError naming the documents not written)."""
    await database(engine)[READINGS].insert_many(docs, ordered=False)


async def stored_ids(engine: AIOEngine, docs: Sequence[Doc]) -> set[ObjectId]:
    """Which of these readings' `_id`s are in `readings` (asked per device, in chunks)."""
    by_device: dict[str, list[ObjectId]] = {}
    for doc in docs:
        by_device.setdefault(doc["meta"]["device_id"], []).append(doc["_id"])
    found: set[ObjectId] = set()
    coll = database(engine)[READINGS]
    for device_id, ids in by_device.items():
        for part in chunks(ids):
            query = {"$and": [{"meta.device_id": device_id}, {"_id": {"$in": part}}]}
            found.update([doc["_id"] async for doc in coll.find(query, {"_id": 1})])
    return found


def _range(device_id: str, start: datetime, end: datetime) -> list[Doc]:
    # One clause per bound: the embedded server's aggregation `$match` gets a combined date
    # range wrong, and real MongoDB merges these into one index range on (meta.device_id, ts).
    return [{"meta.device_id": device_id}, {"ts": {"$gte": start}}, {"ts": {"$lt": end}}]


def _tie_order(docs: list[Doc], *, descending: bool) -> list[Doc]:
    """Rows in (ts, _id) order: the server sorts on `ts` only, and ties are broken here."""
    return sorted(docs, key=lambda d: (d["ts"], d["_id"]), reverse=descending)


async def find_history(
    engine: AIOEngine,
    device_id: str,
    *,
    start: datetime,
    end: datetime,
    keys: Sequence[str] | None,
    after: tuple[datetime, ObjectId, bool] | None,
    descending: bool,
    limit: int,
) -> list[Doc]:
    """Up to `limit` readings in (ts, _id) order, after the cursor position (ask for one more
    than a page shows: the last row may stand for its time group).

    The server sorts on `ts` alone, which the time-series buckets serve in order (a sort on
    `_id` too would unpack and sort every bucket in range). Rows sharing the last time of the
    page are all read, so ties are ordered by `_id` here exactly as a compound sort would.
    """
    clauses = _range(device_id, start, end)
    if keys:
        clauses.append({"$or": [{f"m.{k}": {"$exists": True}} for k in keys]})
    if after is not None:
        ts, oid, group_done = after
        op = "$lt" if descending else "$gt"
        if group_done:  # no reading left at `ts`: a plain time range
            clauses.append({"ts": {op: ts}})
        else:
            clauses.append({"$or": [{"ts": {op: ts}}, {"$and": [{"ts": ts}, {"_id": {op: oid}}]}]})
    # Whole `m`: the embedded server drops nested projections such as `m.temperature`.
    projection: Doc = {"ts": 1, "m": 1, "quality": 1, "suspect": 1}
    coll = database(engine)[READINGS]
    direction = DESCENDING if descending else ASCENDING
    cursor = coll.find({"$and": clauses}, projection).sort("ts", direction).limit(limit)
    docs = [doc async for doc in cursor]
    if len(docs) == limit and limit > 1 and docs[-1]["ts"] == docs[-2]["ts"]:
        # The page may have cut a group of equal times: read that whole group. (When the last
        # row's time is its own, the rows before it are whole groups, and the caller, which
        # asks for one row more than it shows, uses the last only to know there are more.)
        edge = docs[-1]["ts"]
        docs = [d for d in docs if d["ts"] != edge]
        # One time, so the `_id` sort unpacks only the buckets holding it; bounded by `limit`.
        tied = coll.find({"$and": [*clauses, {"ts": edge}]}, projection)
        docs.extend([doc async for doc in tied.sort("_id", direction).limit(limit)])
    return _tie_order(docs, descending=descending)[:limit]


# Rows sharing one time that an export orders by id; past this many (a device would have to
# send them all in one millisecond) the rest of that group follows in the server's order.
EXPORT_TIE_LIMIT = 10_000


async def iter_readings(
    engine: AIOEngine,
    device_id: str,
    *,
    start: datetime,
    end: datetime,
    window: timedelta = timedelta(days=1),
    batch_size: int = 1000,
) -> AsyncIterator[Doc]:
    """Readings of a range in (ts, _id) order, one day-wide window per query.

    Each window is one cursor sorted on `ts` only, which the time-series buckets serve in
    order (no in-memory sort of the range on the server); rows sharing a time are buffered and
    ordered by `_id` here, up to EXPORT_TIE_LIMIT of them.
    """
    coll = database(engine)[READINGS]
    projection: Doc = {"ts": 1, "m": 1, "quality": 1}
    window_start = start
    while window_start < end:
        window_end = min(window_start + window, end)
        cursor = (
            coll.find({"$and": _range(device_id, window_start, window_end)}, projection)
            .sort("ts", ASCENDING)
            .batch_size(batch_size)
        )
        group: list[Doc] = []
        async for doc in cursor:
            if group and (doc["ts"] != group[0]["ts"] or len(group) >= EXPORT_TIE_LIMIT):
                for row in _tie_order(group, descending=False):
                    yield row
                group = []
            group.append(doc)
        for row in _tie_order(group, descending=False):
            yield row
        window_start = window_end


async def aggregate_groups(
    engine: AIOEngine,
    device_id: str,
    *,
    start: datetime,
    end: datetime,
    origin: datetime,
    step_s: int,
    keys: Sequence[str],
) -> list[Doc]:
    """Per (metric, step-wide group): sum, count, min, max, first and last with their times.

    Groups are keyed by the string `"<key>|<index>"`: the embedded server does not evaluate
    expressions inside a compound `_id`. Only numeric values are aggregated.
    """
    index = bucket_index_expr(origin=origin, unit="second", size=step_s)
    # First and last without a `$sort` (which would unpack and sort every bucket in range):
    # the min and max of "<time>|<value>" strings, whose time part sorts as the time does.
    # `$top`/`$bottom` and `$min` of a sub-document fail on the embedded server; this works on
    # both, and `_split_timed` turns the strings back into a time and a number.
    timed = {
        "$concat": [
            {"$dateToString": {"date": "$ts", "format": "%Y-%m-%dT%H:%M:%S.%LZ"}},
            "|",
            {"$toString": "$kv.v"},
        ]
    }
    pipeline: list[Doc] = [
        {"$match": {"$and": _range(device_id, start, end)}},
        {"$project": {"_id": 0, "ts": 1, "kv": {"$objectToArray": "$m"}}},
        {"$unwind": "$kv"},
        {"$match": {"kv.k": {"$in": list(keys)}, "kv.v": {"$type": "number"}}},
        {
            "$group": {
                "_id": {"$concat": ["$kv.k", "|", {"$toString": index}]},
                "sum": {"$sum": "$kv.v"},
                "n": {"$sum": 1},
                "min": {"$min": "$kv.v"},
                "max": {"$max": "$kv.v"},
                "first": {"$min": timed},
                "last": {"$max": timed},
            }
        },
    ]
    cursor = database(engine)[READINGS].aggregate(pipeline, allowDiskUse=True)
    rows = []
    async for row in cursor:
        row["first_ts"], row["first"] = _split_timed(row["first"])
        row["last_ts"], row["last"] = _split_timed(row["last"])
        rows.append(row)
    return rows


def _split_timed(text: str) -> tuple[datetime, float | int]:
    """`"2026-01-01T00:00:00.000Z|21.5"` as (aware datetime, number)."""
    when, _, number = text.partition("|")
    at = datetime.strptime(when, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    value: float | int = int(number) if number.lstrip("-").isdigit() else float(number)
    return at, value


# --- device_latest -----------------------------------------------------------------------------


# `newest.at_ms` of a document that holds no value yet: older than any reading, so the usual
# "all newer" update (`latest_offer_all`) filters on a plain comparison, with no `$or` for a
# missing field (on the embedded server that filter costs about 1.7x a plain one).
NEVER_MS = -(2**62)


def _latest_skeleton(product_id: str) -> Doc:
    return {
        "product_id": product_id,
        "m": {},
        "known": {},
        "known_count": 0,
        "newest": {"at_ms": NEVER_MS},
    }


def latest_ensure(device_id: str, product_id: str) -> UpdateOne:
    """Create the device's latest document when missing (no-op otherwise)."""
    return UpdateOne(
        {"_id": device_id}, {"$setOnInsert": _latest_skeleton(product_id)}, upsert=True
    )


async def known_metrics(engine: AIOEngine, device_id: str) -> frozenset[str]:
    """The stored keys of every metric the device has registered (see `register_metrics`)."""
    doc = await database(engine)[DEVICE_LATEST].find_one({"_id": device_id}, {"known": 1})
    return frozenset((doc or {}).get("known") or {})


async def register_metrics(
    engine: AIOEngine, device_id: str, product_id: str, keys: Sequence[str], *, cap: int
) -> frozenset[str]:
    """Add metric keys to the device's registry, up to `cap` in all; the registry after.

    `known` maps each registered key to true and `known_count` counts them; an update applies
    only if the count is still the one read, so concurrent requests (in any process) can
    never register more than `cap` names between them.
    """
    coll = database(engine)[DEVICE_LATEST]
    await coll.update_one(
        {"_id": device_id}, {"$setOnInsert": _latest_skeleton(product_id)}, upsert=True
    )
    known: set[str] = set()
    for _ in range(8):
        doc = await coll.find_one({"_id": device_id}, {"known": 1, "known_count": 1}) or {}
        known = set(doc.get("known") or {})
        adding = [k for k in keys if k not in known][: max(0, cap - len(known))]
        if not adding:
            break
        stored = doc.get("known_count")
        # `$in: [None]`: a bare null match next to other conditions is not portable.
        same_count = {"known_count": stored if stored is not None else {"$in": [None]}}
        changes: Doc = {f"known.{k}": True for k in adding}
        changes["known_count"] = len(known) + len(adding)
        result = await coll.update_one(
            {"$and": [{"_id": device_id}, same_count]}, {"$set": changes}
        )
        if result.modified_count:
            known.update(adding)
            break
    return frozenset(known)


def _entry(value: Doc) -> Doc:
    # `at_ms` orders entries: dates in update filters compare only to the second on the
    # embedded server; integers compare exactly everywhere (readers use `ts`).
    return {**value, "at_ms": epoch_ms(value["ts"])}


def latest_offer(device_id: str, key: str, value: Doc) -> UpdateOne:
    """Set one metric's latest `{ts, v}` only if it is newer than the stored one."""
    ms = epoch_ms(value["ts"])
    newer = {"$or": [{f"m.{key}.at_ms": {"$lt": ms}}, {f"m.{key}.at_ms": {"$exists": False}}]}
    # `$and`, not `{"_id": ..., "$or": ...}`: next to an `$or` the embedded server drops the
    # sibling `_id` and would update another device's document.
    return UpdateOne({"$and": [{"_id": device_id}, newer]}, {"$set": {f"m.{key}": _entry(value)}})


def _older_than(ms: int) -> Doc:
    """The device's newest stored value is older than `ms` (or it has none yet)."""
    return {"$or": [{"newest.at_ms": {"$lt": ms}}, {"newest.at_ms": {"$exists": False}}]}


def latest_offer_all(device_id: str, values: dict[str, Doc]) -> UpdateOne:
    """Set every given metric at once when all are newer than anything stored for the device.

    `newest` holds the time of the device's newest stored value (a sub-document: a `$set` of
    a bare date is not portable); documents start with it at `NEVER_MS`. This one operation
    replaces one per metric in the usual case of readings arriving in order; `latest_offer`
    handles late ones, and documents made before `newest` was in the skeleton (the
    `latest_offer` path sets it on them with `latest_newest`).
    """
    oldest_new = min(v["ts"] for v in values.values())
    newest_new = max(v["ts"] for v in values.values())
    update = {f"m.{k}": _entry(v) for k, v in values.items()}
    update["newest"] = _entry({"ts": newest_new})
    # `_id` beside plain conditions (no `$or`) is exact on both servers.
    query = {"_id": device_id, "newest.at_ms": {"$lt": epoch_ms(oldest_new)}}
    return UpdateOne(query, {"$set": update})


def latest_newest(device_id: str, ts: datetime) -> UpdateOne:
    """Move the device's `newest` forward to `ts` (never back)."""
    query = {"$and": [{"_id": device_id}, _older_than(epoch_ms(ts))]}
    return UpdateOne(query, {"$set": {"newest": _entry({"ts": ts})}})


async def write_latest(engine: AIOEngine, ops: Sequence[UpdateOne]) -> int:
    """Apply latest-value updates, unordered; returns how many matched or upserted.

    Unordered, so one device's failing update (e.g. a document over the size limit) never
    drops the others'; failures are logged in a bounded form (count and codes only).
    """
    if not ops:
        return 0
    try:
        result = await database(engine)[DEVICE_LATEST].bulk_write(list(ops), ordered=False)
    except BulkWriteError as exc:
        details = exc.details or {}
        errors = details.get("writeErrors", [])
        logger.error(
            "latest values not updated for some devices",
            extra={
                "failed": len(errors),
                "codes": sorted({int(e.get("code", 0)) for e in errors})[:5],
            },
        )
        return int(details.get("nMatched", 0)) + int(details.get("nUpserted", 0))
    return int(result.matched_count) + int(result.upserted_count)


async def read_latest(engine: AIOEngine, device_id: str) -> Doc | None:
    """The device's latest-values document: one read, whatever the history size."""
    return await database(engine)[DEVICE_LATEST].find_one({"_id": device_id})


# --- idempotency keys --------------------------------------------------------------------------


async def insert_key(engine: AIOEngine, doc: Doc) -> bool:
    """Claim a key; False when (device, key) exists already."""
    try:
        await database(engine)[IDEMPOTENCY_KEYS].insert_one(doc)
    except DuplicateKeyError:
        return False
    return True


async def find_key(engine: AIOEngine, device_id: str, key: str) -> Doc | None:
    """The stored record of a key."""
    return await database(engine)[IDEMPOTENCY_KEYS].find_one({"device_id": device_id, "key": key})


async def take_over_key(engine: AIOEngine, key_id: ObjectId, *, lease: int, new_lease: int) -> bool:
    """Take a pending key whose owner's lease ran out; only one taker wins."""
    result = await database(engine)[IDEMPOTENCY_KEYS].update_one(
        {"_id": key_id, "state": "pending", "lease_until_ms": lease},
        {"$set": {"lease_until_ms": new_lease}},
    )
    return bool(result.modified_count)


def complete_key_op(key_id: ObjectId, response: Doc) -> UpdateOne:
    """Record the answer of a keyed request (retries replay it)."""
    return UpdateOne(
        {"_id": key_id, "state": "pending"}, {"$set": {"state": "done", "response": response}}
    )


async def complete_keys(engine: AIOEngine, ops: Sequence[UpdateOne]) -> None:
    """Record several answers at once."""
    if ops:
        await database(engine)[IDEMPOTENCY_KEYS].bulk_write(list(ops), ordered=False)


async def expire_key_lease(engine: AIOEngine, key_id: ObjectId) -> None:
    """End a pending key's lease now, so the next retry takes it over at once."""
    await database(engine)[IDEMPOTENCY_KEYS].update_one(
        {"_id": key_id, "state": "pending"}, {"$set": {"lease_until_ms": 0}}
    )


async def release_key(engine: AIOEngine, key_id: ObjectId) -> None:
    """Forget a pending key whose request failed, so a retry can run."""
    await database(engine)[IDEMPOTENCY_KEYS].delete_one({"_id": key_id, "state": "pending"})
