"""A device's presence: when it was last heard from, what it last reported, its status.

The one owner of the `devices.presence` sub-document (`{"last_seen_at", "reported_status",
"detail"}`): how it is written (always whole; by ingest, throttled, and by heartbeats), and
how a status is derived from it (offline when silent too long, else error or online), in
Python and as a query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from bson import ObjectId
from odmantic import AIOEngine
from pymongo import UpdateOne

from app.catalog.models import Device
from app.core import db
from app.core.models import parse_object_id, utcnow

Doc = dict[str, Any]


class DeviceStatus(StrEnum):
    """Derived from `presence`: offline when silent too long, error when it says so."""

    ONLINE = "online"
    OFFLINE = "offline"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Presence:
    """What was last recorded about a device, parsed from `devices.presence`."""

    last_seen_at: datetime | None
    reported_status: str | None
    detail: dict[str, Any] | None

    def status(self, *, now: datetime, offline_after_s: int) -> DeviceStatus:
        """online / offline / error: silent too long is offline whatever it said."""
        if self.last_seen_at is None or self.last_seen_at < now - timedelta(
            seconds=offline_after_s
        ):
            return DeviceStatus.OFFLINE
        if self.reported_status == "error":
            return DeviceStatus.ERROR
        return DeviceStatus.ONLINE


class PresenceConflict(Exception):
    """A heartbeat kept losing to concurrent presence writes."""


def parse(raw: Doc | None) -> Presence:
    """Read a stored presence sub-document."""
    if not raw:
        return Presence(None, None, None)
    seen = raw.get("last_seen_at")
    if isinstance(seen, str):  # tolerate a string date rather than failing a read
        seen = datetime.fromisoformat(seen)
    return Presence(
        last_seen_at=seen if isinstance(seen, datetime) else None,
        reported_status=raw.get("reported_status"),
        detail=raw.get("detail"),
    )


def derive_status(raw: Doc | None, *, now: datetime, offline_after_s: int) -> DeviceStatus:
    """The status of a stored presence sub-document (`Presence.status`)."""
    return parse(raw).status(now=now, offline_after_s=offline_after_s)


def status_filter(status: DeviceStatus, *, now: datetime, offline_after_s: int) -> Doc:
    """The query matching devices whose derived status is `status` (same rule as above)."""
    cutoff = now - timedelta(seconds=offline_after_s)
    if status is DeviceStatus.OFFLINE:
        # Never seen: `$in: [None]`, which the embedded server also honours inside `$and`.
        never = {"presence.last_seen_at": {"$in": [None]}}
        return {"$or": [never, {"presence.last_seen_at": {"$lt": cutoff}}]}
    recent = {"presence.last_seen_at": {"$gte": cutoff}}
    if status is DeviceStatus.ERROR:
        return {**recent, "presence.reported_status": "error"}
    return {**recent, "presence.reported_status": {"$ne": "error"}}


def document(*, now: datetime, reported_status: str | None, detail: Doc) -> Doc:
    """The presence sub-document, always written whole.

    `last_seen_ms` repeats `last_seen_at` as epoch milliseconds: aggregations (the fleet
    statistics) compare it, since a date range inside an aggregation `$match` is not portable
    (mongo-compat.md, row 2).
    """
    return {
        "last_seen_at": now,
        "last_seen_ms": epoch_ms(now),
        "reported_status": reported_status,
        "detail": detail,
    }


def epoch_ms(at: datetime) -> int:
    """Milliseconds since the epoch."""
    return int(at.timestamp() * 1000)


def recent_ms_filter(*, now: datetime, offline_after_s: int) -> Doc:
    """Devices heard from within `offline_after_s` (by `last_seen_ms`; aggregation-safe)."""
    return {"presence.last_seen_ms": {"$gte": epoch_ms(now) - offline_after_s * 1000}}


def refresh_op(
    device_id: str, previous: Doc | None, *, now: datetime, cutoff: datetime
) -> tuple[UpdateOne, Doc]:
    """Refresh `last_seen_at` unless written since `cutoff` or changed since `previous`."""
    oid = ObjectId(device_id)
    if previous is None:
        query: Doc = {"_id": oid, "presence": None}
        new = document(now=now, reported_status=None, detail={})
    else:
        # Sub-document equality is not portable; the status stands for the whole presence,
        # and `last_seen_ms` (every write sets it) for the rest, e.g. a heartbeat's detail.
        query = {
            "_id": oid,
            "presence.last_seen_at": {"$lt": cutoff},
            "presence.reported_status": previous.get("reported_status"),
        }
        if previous.get("last_seen_ms") is not None:
            query["presence.last_seen_ms"] = previous["last_seen_ms"]
        new = document(
            now=now,
            reported_status=previous.get("reported_status"),
            detail=previous.get("detail") or {},
        )
    return UpdateOne(query, {"$set": {"presence": new}}), new


async def write_refreshes(engine: AIOEngine, ops: Sequence[UpdateOne]) -> int:
    """Apply presence refreshes; returns how many devices were updated."""
    if not ops:
        return 0
    result = await db.collection(engine, Device).bulk_write(list(ops), ordered=False)
    return int(result.modified_count)


async def read(engine: AIOEngine, device_id: str) -> Doc | None:
    """The device's stored presence (fresh, not cached)."""
    oid = parse_object_id(device_id)
    if oid is None:
        return None
    device = await db.collection(engine, Device).find_one({"_id": oid}, {"presence": 1})
    return None if device is None else device.get("presence")


async def read_many(engine: AIOEngine, device_ids: Sequence[str]) -> dict[str, Doc | None]:
    """The stored presence of each device that exists (fresh, not cached)."""
    found: dict[str, Doc | None] = {}
    for chunk in db.chunks([ObjectId(d) for d in device_ids]):
        cursor = db.collection(engine, Device).find({"_id": {"$in": chunk}}, {"presence": 1})
        async for doc in cursor:
            found[str(doc["_id"])] = doc.get("presence")
    return found


async def _replace(
    engine: AIOEngine, device_id: str, *, presence: Doc, expected_status: str | None
) -> bool:
    """Write the whole presence unless another writer changed the status since it was read."""
    # `presence.reported_status: None` also matches a missing or null presence.
    query: Doc = {"_id": ObjectId(device_id), "presence.reported_status": expected_status}
    result = await db.collection(engine, Device).update_one(query, {"$set": {"presence": presence}})
    return bool(result.matched_count)


async def heartbeat(
    engine: AIOEngine,
    *,
    device_id: str,
    status: str | None,
    detail: Doc | None,
    given: set[str],
    throttle_s: float,
) -> tuple[Doc, bool]:
    """Record that the device is alive, with its reported status and detail when `given`.

    Returns the presence and whether it was written (an unchanged one within `throttle_s` is
    not). Raises `PresenceConflict` when concurrent writers keep winning.
    """
    for _ in range(3):
        previous = await read(engine, device_id) or {}
        new_status = status if "status" in given else previous.get("reported_status")
        new_detail = (detail if "detail" in given else previous.get("detail")) or {}
        now = utcnow()
        last_seen = previous.get("last_seen_at")
        unchanged = (
            previous
            and new_status == previous.get("reported_status")
            and new_detail == (previous.get("detail") or {})
        )
        if (
            unchanged
            and isinstance(last_seen, datetime)
            and now - last_seen < timedelta(seconds=throttle_s)
        ):
            return previous, False
        presence = document(now=now, reported_status=new_status, detail=new_detail)
        if await _replace(
            engine, device_id, presence=presence, expected_status=previous.get("reported_status")
        ):
            return presence, True
    raise PresenceConflict(device_id)
