"""Server behaviours the app relies on, asserted through motor.

Passes on the embedded server (nx-27017) and on real MongoDB 7+ (`MONGODB_URL=... make test`).
Where the two differ, the app uses the portable form tested here (README, "Portable MongoDB
rules").
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo import ASCENDING, IndexModel, ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError

from app.core.db import CollectionSpec, MongoDatabase, ensure_collection
from app.core.models import bucket_index_expr, epoch_ms
from app.core.services import services_of

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
async def coll(mongo_db: MongoDatabase, request: pytest.FixtureRequest) -> Any:
    name = f"compat_{request.node.name[:40]}_{ObjectId()}"
    yield mongo_db[name]
    await mongo_db.drop_collection(name)


class TestIds:
    async def test_string_references_match_by_equality(self, coll: Any) -> None:
        ref = str(ObjectId())
        await coll.insert_many([{"product_id": ref}, {"product_id": str(ObjectId())}])
        assert await coll.count_documents({"product_id": ref}) == 1

    async def test_id_equality_and_in(self, coll: Any) -> None:
        result = await coll.insert_many([{"n": 1}, {"n": 2}, {"n": 3}])
        first, second, _ = result.inserted_ids
        assert (await coll.find_one({"_id": first}))["n"] == 1
        # find(), not count_documents()/aggregate: the embedded server's aggregation $match
        # does not match ObjectIds (see mongo-compat.md).
        found = await coll.find({"_id": {"$in": [first, second]}}).to_list(None)
        assert sorted(d["n"] for d in found) == [1, 2]

    async def test_id_range_for_cursor_pagination(self, coll: Any) -> None:
        ids = (await coll.insert_many([{"n": i} for i in range(5)])).inserted_ids
        page = await coll.find({"_id": {"$gt": ids[1]}}).sort("_id", ASCENDING).to_list(2)
        assert [d["n"] for d in page] == [2, 3]


class TestIndexesAndUpdates:
    async def test_unique_index_raises_duplicate_key(self, coll: Any) -> None:
        await coll.create_index("serial", unique=True)
        await coll.insert_one({"serial": "A"})
        with pytest.raises(DuplicateKeyError):
            await coll.insert_one({"serial": "A"})

    async def test_compound_unique_index(self, coll: Any) -> None:
        await coll.create_index([("resource", ASCENDING), ("user", ASCENDING)], unique=True)
        await coll.insert_one({"resource": "r", "user": "u"})
        await coll.insert_one({"resource": "r", "user": "v"})
        with pytest.raises(DuplicateKeyError):
            await coll.insert_one({"resource": "r", "user": "u"})

    async def test_create_indexes_is_idempotent(self, coll: Any) -> None:
        # Index names are not relied on: the embedded server picks its own.
        spec = [IndexModel([("a", ASCENDING)]), IndexModel("b", expireAfterSeconds=60)]
        await coll.create_indexes(spec)
        await coll.create_indexes(spec)
        info = (await coll.index_information()).values()
        assert [("a", 1)] in [v["key"] for v in info]
        assert any(v.get("expireAfterSeconds") == 60 for v in info)

    async def test_counter_upsert_with_inc(self, coll: Any) -> None:
        for expected in (1, 2, 3):
            doc = await coll.find_one_and_update(
                {"_id": "k"}, {"$inc": {"n": 1}}, upsert=True, return_document=ReturnDocument.AFTER
            )
            assert doc["n"] == expected

    async def test_set_on_insert_with_update_one(self, coll: Any) -> None:
        # update_one, not find_one_and_update: the embedded server drops $setOnInsert there.
        for _ in range(2):
            await coll.update_one(
                {"key": "k"}, {"$inc": {"n": 1}, "$setOnInsert": {"created_at": T0}}, upsert=True
            )
        doc = await coll.find_one({"key": "k"})
        assert (doc["n"], doc["created_at"]) == (2, T0)

    async def test_max_on_numbers(self, coll: Any) -> None:
        await coll.insert_one({"_id": 1, "n": 5})
        await coll.update_one({"_id": 1}, {"$max": {"n": 3}})
        assert (await coll.find_one({"_id": 1}))["n"] == 5
        await coll.update_one({"_id": 1}, {"$max": {"n": 7}})
        assert (await coll.find_one({"_id": 1}))["n"] == 7

    async def test_add_to_set_and_pull(self, coll: Any) -> None:
        await coll.insert_one({"_id": 1, "tags": ["a"]})
        await coll.update_one({"_id": 1}, {"$addToSet": {"tags": "a"}})
        await coll.update_one({"_id": 1}, {"$addToSet": {"tags": "b"}})
        await coll.update_one({"_id": 1}, {"$pull": {"tags": "a"}})
        assert (await coll.find_one({"_id": 1}))["tags"] == ["b"]

    async def test_conditional_latest_value_never_goes_back(self, coll: Any) -> None:
        """The portable form of "set only if newer" (no pipeline updates).

        `_id` and the `$or` go in one `$and`: the embedded server drops an `_id` that stands
        beside a top-level `$or` and may update another document. The order is an integer
        (epoch ms): the embedded server compares dates in update filters to the second only.
        """

        async def offer(device: str, ts: datetime, value: float) -> int:
            ms = epoch_ms(ts)
            newer = [{"m.t.at_ms": {"$lt": ms}}, {"m.t.at_ms": {"$exists": False}}]
            result = await coll.update_one(
                {"$and": [{"_id": device}, {"$or": newer}]},
                {"$set": {"m.t": {"ts": ts, "v": value, "at_ms": ms}}},
            )
            return int(result.modified_count)

        await coll.insert_many([{"_id": "other", "m": {}}, {"_id": "dev", "m": {}}])
        assert await offer("dev", T0 + timedelta(minutes=5), 2.0) == 1
        assert await offer("dev", T0, 1.0) == 0  # late reading
        # 100 ms later, within the same second: newer all the same.
        assert await offer("dev", T0 + timedelta(minutes=5, milliseconds=100), 3.0) == 1
        stored = (await coll.find_one({"_id": "dev"}))["m"]["t"]
        assert (stored["v"], stored["ts"]) == (3.0, T0 + timedelta(minutes=5, milliseconds=100))
        assert (await coll.find_one({"_id": "other"}))["m"] == {}

    async def test_all_newer_offer_beside_id_without_or(self, coll: Any) -> None:
        """The usual latest-values update: `_id` beside a plain comparison on a nested
        integer, with documents made holding a sentinel older than any time (no `$or` with
        `$exists` for a missing field). Exact on both: other documents are never touched."""

        async def offer(device: str, ts: datetime, value: float) -> int:
            ms = epoch_ms(ts)
            result = await coll.update_one(
                {"_id": device, "newest.at_ms": {"$lt": ms}},
                {"$set": {"m.t": {"ts": ts, "v": value, "at_ms": ms}, "newest": {"at_ms": ms}}},
            )
            return int(result.modified_count)

        never = {"at_ms": -(2**62)}
        await coll.insert_many(
            [{"_id": "other", "m": {}, "newest": never}, {"_id": "dev", "m": {}, "newest": never}]
        )
        assert await offer("dev", T0 + timedelta(minutes=5), 2.0) == 1
        assert await offer("dev", T0, 1.0) == 0  # late reading
        assert await offer("dev", T0 + timedelta(minutes=5, milliseconds=100), 3.0) == 1
        assert await offer("gone", T0 + timedelta(minutes=9), 4.0) == 0
        stored = (await coll.find_one({"_id": "dev"}))["m"]["t"]
        assert (stored["v"], stored["ts"]) == (3.0, T0 + timedelta(minutes=5, milliseconds=100))
        assert await coll.find_one({"_id": "other"}) == {"_id": "other", "m": {}, "newest": never}

    async def test_bulk_write(self, coll: Any) -> None:
        ops = [UpdateOne({"_id": i}, {"$set": {"v": i}}, upsert=True) for i in range(3)]
        result = await coll.bulk_write(ops, ordered=False)
        assert result.upserted_count == 3


class TestDatetimes:
    """Dates are written whole: by insert, replace, or inside a `$set` sub-document."""

    async def test_replace_keeps_datetimes(self, coll: Any) -> None:
        await coll.insert_one({"_id": 1, "at": T0})
        await coll.replace_one({"_id": 1}, {"at": T0 + timedelta(hours=1)})
        assert (await coll.find_one({"_id": 1}))["at"] == T0 + timedelta(hours=1)

    async def test_set_of_sub_document_keeps_datetimes(self, coll: Any) -> None:
        await coll.insert_one({"_id": 1, "m": {}})
        await coll.update_one({"_id": 1}, {"$set": {"m.x": {"ts": T0, "v": 1}}})
        assert (await coll.find_one({"_id": 1}))["m"]["x"]["ts"] == T0

    async def test_find_by_date_range_with_stable_cursor(self, coll: Any) -> None:
        await coll.insert_many([{"ts": T0 + timedelta(hours=i), "k": "a"} for i in range(5)])
        in_range = {"ts": {"$gte": T0 + timedelta(hours=1), "$lt": T0 + timedelta(hours=4)}}
        order = [("ts", -1), ("_id", -1)]
        page = await coll.find(in_range).sort(order).limit(2).to_list(None)
        assert [d["ts"].hour for d in page] == [3, 2]
        last = page[-1]
        after = {
            "$or": [{"ts": {"$lt": last["ts"]}}, {"ts": last["ts"], "_id": {"$lt": last["_id"]}}]
        }
        rest = await coll.find({**in_range, **after}).sort(order).to_list(None)
        assert [d["ts"].hour for d in rest] == [1]


class TestModelIO:
    """The document helpers of app.core.db round-trip ODMantic models on both servers."""

    async def test_insert_find_replace_delete(self, app: Any) -> None:
        from odmantic import Model

        from app.core import db

        class Probe(Model):
            at: datetime
            ref: str
            model_config = {"collection": f"compat_probe_{ObjectId()}"}

        engine = services_of(app).engine
        probe = await db.insert(engine, Probe(at=T0, ref="r"))
        found = await db.find_one(engine, Probe, {"_id": probe.id})
        assert found is not None
        assert found.at == T0
        found.at = T0 + timedelta(days=1)
        await db.replace(engine, found)
        [again] = await db.find_many(engine, Probe, {"ref": "r"})
        assert again.at == T0 + timedelta(days=1)
        assert again.at.tzinfo is not None
        await db.delete(engine, again)
        assert await db.find_one(engine, Probe, {"_id": probe.id}) is None
        await db.database(engine).drop_collection(Probe.model_config["collection"])


class TestAggregation:
    async def test_group_functions(self, coll: Any) -> None:
        await coll.insert_many(
            [{"g": "a", "v": v, "ts": T0 + timedelta(seconds=i)} for i, v in enumerate([1, 5, 3])]
        )
        pipeline = [
            {"$sort": {"ts": 1}},
            {
                "$group": {
                    "_id": "$g",
                    "avg": {"$avg": "$v"},
                    "min": {"$min": "$v"},
                    "max": {"$max": "$v"},
                    "sum": {"$sum": "$v"},
                    "count": {"$sum": 1},
                    "first": {"$first": "$v"},
                    "last": {"$last": "$v"},
                }
            },
        ]
        [row] = await coll.aggregate(pipeline).to_list(None)
        assert (row["avg"], row["min"], row["max"], row["sum"]) == (3, 1, 5, 9)
        assert (row["count"], row["first"], row["last"]) == (3, 1, 3)

    async def test_date_diff_buckets(self, coll: Any) -> None:
        times = [T0 + timedelta(minutes=m) for m in (0, 4, 5, 14, 15, 61)]
        await coll.insert_many([{"ts": ts, "v": 1} for ts in times])
        pipeline = [
            {
                "$group": {
                    "_id": bucket_index_expr(origin=T0, unit="minute", size=15),
                    "n": {"$sum": "$v"},
                }
            },
            {"$sort": {"_id": 1}},
        ]
        rows = await coll.aggregate(pipeline).to_list(None)
        assert [(int(r["_id"]), r["n"]) for r in rows] == [(0, 4), (1, 1), (4, 1)]

    async def test_date_to_string_in_utc(self, coll: Any) -> None:
        await coll.insert_one({"ts": T0 + timedelta(hours=3)})
        [row] = await coll.aggregate(
            [{"$project": {"s": {"$dateToString": {"date": "$ts", "format": "%Y-%m-%dT%H:00"}}}}]
        ).to_list(None)
        assert row["s"] == "2026-03-01T03:00"

    async def test_facet(self, coll: Any) -> None:
        await coll.insert_many([{"s": "on"}, {"s": "on"}, {"s": "off"}])
        [row] = await coll.aggregate(
            [
                {
                    "$facet": {
                        "total": [{"$count": "n"}],
                        "on": [{"$match": {"s": "on"}}, {"$count": "n"}],
                    }
                }
            ]
        ).to_list(None)
        assert row["total"][0]["n"] == 3
        assert row["on"][0]["n"] == 2


class TestCollections:
    async def test_time_series_creation_is_idempotent(self, mongo_db: MongoDatabase) -> None:
        name = f"compat_ts_{ObjectId()}"
        spec = CollectionSpec(
            name=name,
            options={
                "timeseries": {"timeField": "ts", "metaField": "meta", "granularity": "seconds"},
                "expireAfterSeconds": 3600,
            },
            indexes=[IndexModel([("meta.device_id", ASCENDING), ("ts", ASCENDING)])],
        )
        await ensure_collection(mongo_db, spec)
        await ensure_collection(mongo_db, spec)
        coll = mongo_db[name]
        await coll.insert_many([{"ts": T0, "meta": {"device_id": "d1"}, "v": 1}])
        assert await coll.count_documents({"meta.device_id": "d1"}) == 1
        await mongo_db.drop_collection(name)

    async def test_aware_datetimes_round_trip(self, coll: Any) -> None:
        await coll.insert_one({"_id": 1, "at": T0})
        stored = (await coll.find_one({"_id": 1}))["at"]
        assert stored == T0
        assert stored.tzinfo is not None


class TestReadingsPatterns:
    """Forms the readings domain relies on (app/readings/repository.py)."""

    async def test_aggregation_date_range_split_into_and_clauses(self, coll: Any) -> None:
        await coll.insert_many(
            [{"ts": T0 + timedelta(minutes=i), "meta": {"device_id": "d"}} for i in range(10)]
        )
        start, end = T0 + timedelta(minutes=2), T0 + timedelta(minutes=5)
        match = {"$and": [{"meta.device_id": "d"}, {"ts": {"$gte": start}}, {"ts": {"$lt": end}}]}
        [row] = await coll.aggregate([{"$match": match}, {"$count": "n"}]).to_list(None)
        assert row["n"] == 3

    async def test_sibling_of_or_with_dates_needs_and(self, coll: Any) -> None:
        """`{"_id": x, "$or": [<date comparison>, ...]}` may match other documents on the
        embedded server; `{"$and": [{"_id": x}, {"$or": ...}]}` is exact on both."""
        await coll.insert_many([{"_id": "a", "m": {}}, {"_id": "b", "m": {}}])
        newer = {"$or": [{"m.t.ts": {"$lt": T0}}, {"m.t.ts": {"$exists": False}}]}
        await coll.update_one({"$and": [{"_id": "b"}, newer]}, {"$set": {"m.t": {"ts": T0}}})
        docs = {d["_id"]: d["m"] for d in await coll.find().to_list(None)}
        assert docs == {"a": {}, "b": {"t": {"ts": T0}}}

    async def test_history_cursor_inside_and(self, coll: Any) -> None:
        await coll.insert_many(
            [{"ts": T0 + timedelta(minutes=i // 2), "k": "d" if i < 6 else "x"} for i in range(8)]
        )
        first = await coll.find({"k": "d"}).sort([("ts", -1), ("_id", -1)]).limit(3).to_list(None)
        last = first[-1]
        after = {
            "$or": [{"ts": {"$lt": last["ts"]}}, {"ts": last["ts"], "_id": {"$lt": last["_id"]}}]
        }
        rest = (
            await coll.find({"$and": [{"k": "d"}, after]})
            .sort([("ts", -1), ("_id", -1)])
            .to_list(None)
        )
        assert len(rest) == 3
        assert {d["_id"] for d in rest}.isdisjoint(d["_id"] for d in first)

    async def test_per_metric_groups_with_string_keys(self, coll: Any) -> None:
        docs = [
            {"ts": T0 + timedelta(minutes=i), "m": {"t": float(i), "s": "x", "b": True}}
            for i in (3, 0, 7, 5)
        ]
        await coll.insert_many(docs)
        index = bucket_index_expr(origin=T0, unit="second", size=300)
        pipeline = [
            {"$sort": {"ts": 1}},
            {"$project": {"_id": 0, "ts": 1, "kv": {"$objectToArray": "$m"}}},
            {"$unwind": "$kv"},
            {"$match": {"kv.k": {"$in": ["t", "s", "b"]}, "kv.v": {"$type": "number"}}},
            {
                "$group": {
                    "_id": {"$concat": ["$kv.k", "|", {"$toString": index}]},
                    "sum": {"$sum": "$kv.v"},
                    "n": {"$sum": 1},
                    "first": {"$first": "$kv.v"},
                    "last": {"$last": "$kv.v"},
                }
            },
        ]
        rows = await coll.aggregate(pipeline).to_list(None)
        by_key = {
            (r["_id"].rpartition("|")[0], int(float(r["_id"].rpartition("|")[2]))): r for r in rows
        }
        assert set(by_key) == {("t", 0), ("t", 1)}
        assert (by_key["t", 0]["sum"], by_key["t", 0]["n"]) == (3.0, 2)
        assert (by_key["t", 0]["first"], by_key["t", 0]["last"]) == (0.0, 3.0)
        assert (by_key["t", 1]["first"], by_key["t", 1]["last"]) == (5.0, 7.0)

    async def test_presence_refresh_by_date_and_status(self, coll: Any) -> None:
        await coll.insert_many(
            [
                {"_id": 1, "presence": None},
                {"_id": 2},
                {"_id": 3, "presence": {"last_seen_at": T0, "reported_status": "ok"}},
            ]
        )
        assert (await coll.update_many({"presence": None}, {"$set": {"x": 1}})).matched_count == 2
        stale = {"_id": 3, "presence.last_seen_at": {"$lt": T0 + timedelta(seconds=1)}}
        assert (
            await coll.update_one({**stale, "presence.reported_status": "ok"}, {"$set": {"y": 1}})
        ).matched_count == 1
        assert (
            await coll.update_one({**stale, "presence.reported_status": None}, {"$set": {"y": 1}})
        ).matched_count == 0
        fresh = {"_id": 3, "presence.last_seen_at": {"$lt": T0}}
        assert (await coll.update_one(fresh, {"$set": {"y": 2}})).matched_count == 0


class TestOutboxClaims:
    """The worker's atomic claim and its date-filtered updates and deletes (app/worker)."""

    async def test_conditional_claim_with_current_date(self, coll: Any) -> None:
        await coll.insert_one({"_id": 1, "status": "pending", "attempts": 0, "updated_at": T0})
        update = {
            "$set": {"status": "sending", "claim": "a"},
            "$inc": {"attempts": 1},
            "$currentDate": {"updated_at": True},
        }
        query = {"_id": 1, "status": "pending", "attempts": {"$lt": 3}}
        doc = await coll.find_one_and_update(query, update, return_document=ReturnDocument.AFTER)
        assert (doc["status"], doc["claim"], doc["attempts"]) == ("sending", "a", 1)
        assert isinstance(doc["updated_at"], datetime)
        assert doc["updated_at"] > T0
        # A second claimer finds nothing to claim.
        assert await coll.find_one_and_update(query, update) is None

    async def test_update_and_delete_filtered_by_date(self, coll: Any) -> None:
        # Update filters combine `_id` with plain conditions only: with `_id` AND `$or`, the
        # embedded server updates the first document matching the `$or` instead.
        await coll.insert_many(
            [
                {"_id": i, "status": "pending", "attempts": i % 2, "updated_at": T0 + timedelta(i)}
                for i in range(6)
            ]
        )
        cutoff = T0 + timedelta(3)
        fresh = {"status": "pending", "attempts": 0, "updated_at": {"$lt": cutoff}}
        retrying = {"status": "pending", "attempts": {"$gt": 0}, "updated_at": {"$lt": cutoff}}
        assert sorted(d["_id"] for d in await coll.find(fresh).to_list(None)) == [0, 2]
        assert sorted(d["_id"] for d in await coll.find(retrying).to_list(None)) == [1]
        touched = await coll.update_one({"_id": 2, **fresh}, {"$currentDate": {"updated_at": True}})
        assert touched.modified_count == 1
        assert (await coll.find_one({"_id": 2}))["updated_at"] > cutoff
        assert (await coll.update_one({"_id": 3, **fresh}, {"$set": {"x": 1}})).matched_count == 0
        changed = await coll.update_many({"updated_at": {"$lt": cutoff}}, {"$set": {"old": True}})
        assert changed.modified_count == 2  # 0 and 1; 2 was just touched
        deleted = await coll.delete_many({"updated_at": {"$lt": cutoff}})
        assert deleted.deleted_count == 2
        assert sorted(d["_id"] for d in await coll.find({}).to_list(None)) == [2, 3, 4, 5]

    async def test_group_by_string_status(self, coll: Any) -> None:
        await coll.insert_many([{"status": s} for s in ("sent", "sent", "pending")])
        rows = await coll.aggregate([{"$group": {"_id": "$status", "n": {"$sum": 1}}}]).to_list(
            None
        )
        assert {r["_id"]: r["n"] for r in rows} == {"sent": 2, "pending": 1}


class TestIdentityPatterns:
    """What sessions (refresh-token rotation) and users (first sight, last seen) rely on."""

    async def test_conditional_update_has_one_winner(self, coll: Any) -> None:
        await coll.insert_one({"jti": "t1", "spent": False})
        results = await asyncio.gather(
            *(
                coll.update_one({"jti": "t1", "spent": False}, {"$set": {"spent": True}})
                for _ in range(5)
            )
        )
        assert sorted(r.modified_count for r in results) == [0, 0, 0, 0, 1]

    async def test_upsert_reports_the_insert_once(self, coll: Any) -> None:
        first = await coll.update_one(
            {"uid": "u"}, {"$setOnInsert": {"uid": "u", "created_at": T0}}, upsert=True
        )
        second = await coll.update_one(
            {"uid": "u"}, {"$setOnInsert": {"uid": "u", "created_at": T0}}, upsert=True
        )
        assert first.upserted_id is not None
        assert second.upserted_id is None
        assert (await coll.find_one({"uid": "u"}))["created_at"] == T0

    async def test_current_date_writes_a_date(self, coll: Any) -> None:
        await coll.insert_one({"_id": 1, "seen_at": T0})
        await coll.update_one({"_id": 1}, {"$currentDate": {"seen_at": True}})
        stored = (await coll.find_one({"_id": 1}))["seen_at"]
        assert isinstance(stored, datetime)
        assert stored > T0

    async def test_string_prefix_range(self, coll: Any) -> None:
        await coll.insert_many([{"e": e} for e in ("ada@x", "adb@x", "ad@x", "bob@x", "a.*@x")])
        found = await coll.find({"e": {"$gte": "ad", "$lt": "ae"}}).sort("e", 1).to_list(None)
        assert [d["e"] for d in found] == ["ad@x", "ada@x", "adb@x"]

    async def test_update_many_by_string_field(self, coll: Any) -> None:
        await coll.insert_many([{"fid": "f", "r": False}, {"fid": "f", "r": False}, {"fid": "g"}])
        await coll.update_many({"fid": "f"}, {"$set": {"r": True}})
        assert await coll.count_documents({"fid": "f", "r": True}) == 2
        assert await coll.find_one({"fid": "g", "r": True}, {"_id": 1}) is None


class TestCatalogQueries:
    """Forms the catalog (folders, products, devices, permissions) relies on."""

    async def test_array_membership_with_in(self, coll: Any) -> None:
        # `{"path": "x"}` (equality on an array element) matches nothing on the embedded
        # server; `$in` with one value matches on both, with or without an index.
        await coll.create_index("path")
        await coll.insert_many([{"path": ["a", "b"]}, {"path": ["b"]}, {"path": []}])
        assert len(await coll.find({"path": {"$in": ["b"]}}).to_list(None)) == 2
        assert len(await coll.find({"path": {"$in": ["a", "zz"]}}).to_list(None)) == 1

    async def test_readable_filter_shape_with_cursor(self, coll: Any) -> None:
        await coll.create_index("folder_path")
        ids = (
            await coll.insert_many([{"folder_path": ["f1", f"f{i % 3 + 2}"]} for i in range(9)])
        ).inserted_ids
        readable = {"$or": [{"_id": {"$in": [ids[0]]}}, {"folder_path": {"$in": ["f3"]}}]}
        query = {"$and": [readable, {"_id": {"$gt": ids[0]}}]}
        page = await coll.find(query).sort("_id", ASCENDING).to_list(None)
        assert [d["_id"] for d in page] == [ids[1], ids[4], ids[7]]
        assert await coll.find({"_id": {"$in": []}}).to_list(None) == []

    async def test_null_matches_missing_and_null(self, coll: Any) -> None:
        docs = [{"parent_id": None}, {}, {"parent_id": "p"}, {"parent_id": None}]
        ids = (await coll.insert_many(docs)).inserted_ids
        assert len(await coll.find({"parent_id": {"$in": [None]}}).to_list(None)) == 3
        # ANDed with another condition, a plain `None` match finds nothing on the embedded
        # server; `$in: [None]` matches null and missing on both.
        query = {"$and": [{"parent_id": {"$in": [None]}}, {"_id": {"$gt": ids[0]}}]}
        assert len(await coll.find(query).to_list(None)) == 2

    async def test_anchored_prefix_regex(self, coll: Any) -> None:
        await coll.create_index("name_key")
        await coll.insert_many(
            [{"name_key": "thermo x"}, {"name_key": "the.rm"}, {"name_key": "door"}]
        )
        found = await coll.find({"name_key": {"$regex": "^the"}}).to_list(None)
        assert len(found) == 2
        assert len(await coll.find({"name_key": {"$regex": r"^the\."}}).to_list(None)) == 1

    async def test_presence_subdocument_date_ranges(self, coll: Any) -> None:
        await coll.insert_one({"n": 0, "presence": None})
        for n, age in ((1, 10), (2, 600)):
            result = await coll.insert_one({"n": n, "presence": None})
            seen = {"last_seen_at": T0 - timedelta(seconds=age), "reported_status": "ok"}
            await coll.update_one({"_id": result.inserted_id}, {"$set": {"presence": seen}})
        cutoff = T0 - timedelta(seconds=300)
        online = await coll.find({"presence.last_seen_at": {"$gte": cutoff}}).to_list(None)
        offline = await coll.find(
            {
                "$or": [
                    {"presence.last_seen_at": {"$in": [None]}},
                    {"presence.last_seen_at": {"$lt": cutoff}},
                ]
            }
        ).to_list(None)
        assert [d["n"] for d in online] == [1]
        assert sorted(d["n"] for d in offline) == [0, 2]

    async def test_set_list_and_current_date(self, coll: Any) -> None:
        result = await coll.insert_one({"ancestors": ["a"], "updated_at": T0})
        await coll.update_one(
            {"_id": result.inserted_id},
            {"$set": {"ancestors": ["b", "c"]}, "$currentDate": {"updated_at": True}},
        )
        doc = await coll.find_one({"_id": result.inserted_id})
        assert doc["ancestors"] == ["b", "c"]
        assert isinstance(doc["updated_at"], datetime)
        assert doc["updated_at"] > T0
