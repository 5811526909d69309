"""Latest values written before `at_ms` existed get it: late readings compare on it."""

from __future__ import annotations

from typing import Any

from odmantic import AIOEngine
from pymongo import UpdateOne

from app.core import collections
from app.core.config import Settings
from app.core.db import database
from app.core.models import epoch_ms

BATCH = 500


def _with_at_ms(entry: Any) -> Any:
    if isinstance(entry, dict) and "ts" in entry and "at_ms" not in entry:
        return {**entry, "at_ms": epoch_ms(entry["ts"])}
    return entry


async def apply(engine: AIOEngine, settings: Settings) -> None:
    """Set `at_ms` on each metric entry (and `newest`) that lacks it, a sub-document at a time."""
    coll = database(engine)[collections.DEVICE_LATEST]
    ops: list[UpdateOne] = []
    async for doc in coll.find({}, {"m": 1, "newest": 1}):
        changes: dict[str, Any] = {}
        for key, entry in (doc.get("m") or {}).items():
            fixed = _with_at_ms(entry)
            if fixed is not entry:
                changes[f"m.{key}"] = fixed
        newest = doc.get("newest")
        if (fixed := _with_at_ms(newest)) is not newest:
            changes["newest"] = fixed
        if changes:
            ops.append(UpdateOne({"_id": doc["_id"]}, {"$set": changes}))
        if len(ops) >= BATCH:
            await coll.bulk_write(ops, ordered=False)
            ops = []
    if ops:
        await coll.bulk_write(ops, ordered=False)
