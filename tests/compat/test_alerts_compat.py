"""The portable forms the alerts domain relies on, asserted through motor (both servers).

Found while building alerts: the embedded server stores a sub-document given to `$push` or
inside a `$setOnInsert` array as a JSON string, and reads a `$set` boolean back as 1; the
alerts code therefore keeps alarm history as scalar fields, the delivery log as inserted
documents, and reads flags with `bool(...)`.
"""

from __future__ import annotations

from typing import Any

import pytest
from bson import ObjectId
from pymongo import ASCENDING, IndexModel
from pymongo.errors import BulkWriteError

from app.core.db import MongoDatabase


@pytest.fixture
async def coll(mongo_db: MongoDatabase, request: pytest.FixtureRequest) -> Any:
    name = f"compat_alerts_{request.node.name[:30]}_{ObjectId()}"
    collection = mongo_db[name]
    await collection.create_indexes([IndexModel([("active_key", ASCENDING)], unique=True)])
    yield collection
    await mongo_db.drop_collection(name)


class TestActiveKey:
    async def test_upsert_on_the_key_inserts_once_with_its_own_id(self, coll: Any) -> None:
        oid = ObjectId()
        update = {
            "$setOnInsert": {"_id": oid, "raised_ms": 5, "reason": "x"},
            "$inc": {"count": 1},
            "$set": {"last_ms": 7},
        }
        first = await coll.update_one({"active_key": "r:d"}, update, upsert=True)
        second = await coll.update_one({"active_key": "r:d"}, update, upsert=True)
        assert first.upserted_id == oid
        assert second.upserted_id is None
        doc = await coll.find_one({"active_key": "r:d"})
        assert (doc["_id"], doc["count"], doc["raised_ms"], doc["last_ms"]) == (oid, 2, 5, 7)

    async def test_moving_the_key_frees_it(self, coll: Any) -> None:
        await coll.insert_one({"active_key": "r:d", "status": "active"})
        await coll.update_one(
            {"active_key": "r:d"}, {"$set": {"active_key": f"cleared:{ObjectId()}"}}
        )
        await coll.insert_one({"active_key": "r:d", "status": "active"})
        assert await coll.count_documents({}) == 2

    async def test_insert_many_names_the_duplicates_it_refused(self, coll: Any) -> None:
        await coll.insert_one({"active_key": "b"})
        with pytest.raises(BulkWriteError) as caught:
            await coll.insert_many(
                [{"active_key": "a"}, {"active_key": "b"}, {"active_key": "c"}], ordered=False
            )
        refused = {e["index"] for e in caught.value.details["writeErrors"]}
        assert refused == {1}
        assert await coll.count_documents({}) == 3

    async def test_scalar_stamps_and_flags_read_back(self, coll: Any) -> None:
        await coll.insert_one({"active_key": "k", "acknowledged": False})
        await coll.update_one(
            {"active_key": "k"},
            {"$set": {"acknowledged": True, "acknowledged_ms": 9, "acknowledged_by": "u"}},
        )
        doc = await coll.find_one({"active_key": "k"})
        assert bool(doc["acknowledged"]) is True
        assert (doc["acknowledged_ms"], doc["acknowledged_by"]) == (9, "u")
        assert await coll.count_documents({"acknowledged": True}) == 1
