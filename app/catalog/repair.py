"""Mend the folder tree: stale `ancestors`, cycles, and items whose `folder_path` is stale.

Moves run in a transaction where the server has them (app/catalog/folders/moves.py). This
job, run by the beat (`catalog.repair_tree`), covers the rest: a move on a server without
transactions that crashed half-way or raced another move, and a product or device created
while its folder was being moved. It is synchronous (the Celery worker's pymongo database).

Folders are read whole (id, parent, ancestors: a few dozen bytes each), so the job's memory
grows with the number of folders, not of devices. Items are checked only in folders that
changed since the previous run (or that this run fixed); the first run checks every folder.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo.database import Database

from app.core import collections

logger = logging.getLogger(__name__)

SyncDatabase = Database[dict[str, Any]]


def _expected_paths(
    parents: dict[str, str | None],
) -> tuple[dict[str, list[str]], list[str]]:
    """Each folder's ancestors as its parent chain says, and folders that close a cycle."""
    expected: dict[str, list[str]] = {}
    in_cycle: list[str] = []
    for start in parents:
        chain: list[str] = []
        seen: set[str] = set()
        node: str | None = start
        while node is not None and node not in expected:
            if node in seen:
                in_cycle.append(node)
                break
            seen.add(node)
            chain.append(node)
            parent = parents.get(node)
            node = parent if parent in parents else None  # a missing parent: top level
        base = [] if node is None or node in seen else [*expected[node], node]
        for folder_id in reversed(chain):
            expected[folder_id] = base
            base = [*base, folder_id]
    return expected, in_cycle


def repair_tree(db: SyncDatabase, *, since: datetime | None) -> dict[str, int]:
    """Fix folders and the items of changed folders; counts of what was fixed."""
    folders = db[collections.FOLDERS]
    docs = {
        str(d["_id"]): d
        for d in folders.find({}, {"parent_id": 1, "ancestors": 1, "created_by": 1})
    }
    parents = {fid: d.get("parent_id") for fid, d in docs.items()}
    counts = {"cycles": 0, "folders": 0, "items": 0}
    expected, in_cycle = _expected_paths(parents)
    while in_cycle:
        # Two moves crossed without a transaction: the first folder found in the loop goes
        # to its creator's top level, which breaks the cycle.
        breaker = in_cycle[0]
        parents[breaker] = None
        folders.update_one(
            {"_id": ObjectId(breaker)},
            {
                "$set": {
                    "parent_id": None,
                    "scope": f"user:{docs[breaker].get('created_by', '')}",
                },
                "$currentDate": {"updated_at": True},
            },
        )
        counts["cycles"] += 1
        logger.warning("folder cycle broken", extra={"folder_id": breaker})
        expected, in_cycle = _expected_paths(parents)
    fixed: set[str] = set()
    for fid, ancestors in expected.items():
        if list(docs[fid].get("ancestors") or []) != ancestors:
            folders.update_one(
                {"_id": ObjectId(fid)},
                {"$set": {"ancestors": ancestors}, "$currentDate": {"updated_at": True}},
            )
            fixed.add(fid)
    counts["folders"] = len(fixed)
    if since is None:
        check = set(expected)
    else:
        recent = folders.find({"updated_at": {"$gte": since}}, {"_id": 1})
        check = fixed | {str(d["_id"]) for d in recent}
    for fid in check:
        path = [*expected[fid], fid]
        for name in (collections.PRODUCTS, collections.DEVICES):
            held = db[name].find({"folder_id": fid}, {"folder_path": 1})
            if any(list(d.get("folder_path") or []) != path for d in held):
                result = db[name].update_many({"folder_id": fid}, {"$set": {"folder_path": path}})
                counts["items"] += result.modified_count
    if any(counts.values()):
        logger.warning("folder tree repaired", extra=counts)
    return counts
