"""Cleared alarms get `closed_ms` (server time of clearing): retention counts from it.

Before this step retention counted from `cleared_ms`, the time of the reading that cleared the
alarm, so alarms raised and cleared by back-filled readings older than ALARM_RETENTION_DAYS were
deleted at the next sweep. Alarms cleared before the step keep their old clock (`cleared_ms`
copied), and the index on `cleared_ms`, which nothing queries any more, is dropped.
"""

from __future__ import annotations

from odmantic import AIOEngine
from pymongo import UpdateOne

from app.alerts.models import Alarm
from app.core import collections
from app.core.config import Settings
from app.core.db import database

BATCH = 500


async def apply(engine: AIOEngine, settings: Settings) -> None:
    """Index `closed_ms`, back-fill it on cleared alarms, drop the `cleared_ms` index."""
    coll = database(engine)[collections.ALARMS]
    await engine.configure_database([Alarm])
    ops: list[UpdateOne] = []
    # `{"f": {"$in": [None]}}`: missing or null on both servers (mongo-compat row 8).
    missing = {"status": "cleared", "closed_ms": {"$in": [None]}}
    async for doc in coll.find(missing, {"cleared_ms": 1}):
        if doc.get("cleared_ms") is None:
            continue
        ops.append(UpdateOne({"_id": doc["_id"]}, {"$set": {"closed_ms": doc["cleared_ms"]}}))
        if len(ops) >= BATCH:
            await coll.bulk_write(ops, ordered=False)
            ops = []
    if ops:
        await coll.bulk_write(ops, ordered=False)
    for name, info in (await coll.index_information()).items():
        if [field for field, _ in info["key"]] == ["cleared_ms"]:
            await coll.drop_index(name)
