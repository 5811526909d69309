"""The command queue's MongoDB patterns, asserted through motor on the embedded server and on
real MongoDB: the claim (`find_one_and_update` with a sort, an `$or` inside `$and`, `$inc`),
concurrent claims, and integer deadlines in filters."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from bson import ObjectId
from pymongo import ReturnDocument

from app.commands.repository import deliverable
from app.core.db import MongoDatabase

NOW = 1_000_000


@pytest.fixture
async def coll(mongo_db: MongoDatabase, request: pytest.FixtureRequest) -> Any:
    name = f"compat_{request.node.name[:40]}_{ObjectId()}"
    yield mongo_db[name]
    await mongo_db.drop_collection(name)


async def _claim(coll: Any, device: str, tag: str) -> dict[str, Any] | None:
    doc: dict[str, Any] | None = await coll.find_one_and_update(
        deliverable(device, at_ms=NOW, max_attempts=3),
        {"$set": {"state": "delivered", "ack_deadline_ms": NOW + 10_000, "by": tag}},
        sort=[("seq", 1)],
        return_document=ReturnDocument.AFTER,
    )
    return doc


class TestClaim:
    async def test_takes_the_oldest_deliverable_in_order(self, coll: Any) -> None:
        base = {"device_id": "d", "expires_at_ms": NOW + 1, "attempts": 0}
        await coll.insert_many(
            [
                {**base, "seq": 4, "state": "queued"},
                {**base, "seq": 1, "state": "delivered", "ack_deadline_ms": NOW - 1},
                {**base, "seq": 2, "state": "queued", "expires_at_ms": NOW},  # expired
                {**base, "seq": 3, "state": "delivered", "ack_deadline_ms": NOW + 1},  # in flight
                {**base, "seq": 0, "state": "delivered", "ack_deadline_ms": 0, "attempts": 3},
                {**base, "seq": 5, "state": "successful"},
                {**base, "device_id": "other", "seq": -1, "state": "queued"},
            ]
        )
        taken = [await _claim(coll, "d", "x") for _ in range(3)]
        assert [t and t["seq"] for t in taken] == [1, 4, None]

    async def test_concurrent_claims_never_share_a_document(self, coll: Any) -> None:
        base = {"device_id": "c", "state": "queued", "expires_at_ms": NOW + 1, "attempts": 0}
        await coll.insert_many([{**base, "seq": i} for i in range(5)])
        results = await asyncio.gather(*(_claim(coll, "c", str(k)) for k in range(12)))
        seqs = [r["seq"] for r in results if r is not None]
        assert sorted(seqs) == [0, 1, 2, 3, 4]
        assert {d["by"] async for d in coll.find({})} == {r["by"] for r in results if r is not None}
