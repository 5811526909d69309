"""The MongoDB client and ODMantic engine, and idempotent collection and index bootstrap.

Motor and ODMantic stay behind this module and the few `repository.py` modules, so that a
later move to PyMongo's async client touches only those files.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pymongo
from motor.motor_asyncio import (
    AsyncIOMotorClient,
    AsyncIOMotorCollection,
    AsyncIOMotorDatabase,
)
from odmantic import AIOEngine, Model
from pymongo import IndexModel
from pymongo.errors import CollectionInvalid, OperationFailure

from app.core.config import Settings
from app.core.models import parse_object_id

logger = logging.getLogger(__name__)

NAMESPACE_EXISTS = 48

MongoClient = AsyncIOMotorClient[dict[str, Any]]
MongoDatabase = AsyncIOMotorDatabase[dict[str, Any]]


@dataclass(frozen=True)
class CollectionSpec:
    """A collection that is not (only) an ODMantic model: options and raw indexes."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    indexes: Sequence[IndexModel] = ()


def create_client(settings: Settings) -> MongoClient:
    """A motor client that fails fast when MongoDB is away and returns aware UTC datetimes."""
    return AsyncIOMotorClient(
        settings.mongodb_url,
        tz_aware=True,
        serverSelectionTimeoutMS=settings.mongodb_timeout_ms,
        connectTimeoutMS=settings.mongodb_timeout_ms,
        # Every operation is bounded; reads also send it to the server as maxTimeMS, so a
        # query that runs too long is stopped there, not only abandoned here.
        timeoutMS=settings.mongodb_operation_timeout_ms,
        appname="sensorhub",
    )


def create_engine(client: MongoClient, settings: Settings) -> AIOEngine:
    """The ODMantic engine on the configured database."""
    return AIOEngine(client=client, database=settings.mongodb_db)


def database(engine: AIOEngine) -> MongoDatabase:
    """The raw motor database behind an engine, for hot paths and raw collections."""
    db: MongoDatabase = engine.database
    return db


async def ping(client: MongoClient, *, timeout_ms: int | None = None) -> None:
    """Raise unless MongoDB answers a ping (within `timeout_ms`, when given).

    With `timeoutMS` on the client, server selection waits for the whole operation budget,
    not `serverSelectionTimeoutMS`; a probe passes its own, shorter deadline.
    """
    if timeout_ms is None:
        await client.admin.command("ping")
        return
    with pymongo.timeout(timeout_ms / 1000):
        await client.admin.command("ping")


# The most values one `$in` list carries: a command is at most 16 MB, so larger sets are sent
# in chunks (several commands, or an `$or` of chunks), never as one list built from a set of
# unbounded size.
IN_CHUNK = 1000

ItemT = TypeVar("ItemT")


def chunks(items: Sequence[ItemT], size: int = IN_CHUNK) -> Iterable[list[ItemT]]:
    """`items` in consecutive lists of at most `size`."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def in_chunks(field_name: str, values: Sequence[Any]) -> dict[str, Any]:
    """`{field: {"$in": values}}`, as an `$or` of chunks when `values` is long."""
    parts = [{field_name: {"$in": part}} for part in chunks(values)]
    if len(parts) == 1:
        return parts[0]
    return {"$or": parts}


class SchemaMismatch(RuntimeError):
    """A collection exists in a form the code cannot work with; start-up stops, naming it."""


async def collection_info(db: MongoDatabase, name: str) -> dict[str, Any] | None:
    """The `listCollections` entry of `name`, or None.

    Filtered here, not by the command's `filter`, which the embedded server ignores.
    """
    cursor = await db.list_collections()
    async for info in cursor:
        if info.get("name") == name:
            found: dict[str, Any] = info
            return found
    return None


async def check_timeseries(db: MongoDatabase, spec: CollectionSpec) -> None:
    """Start-up check: `spec` is the time-series collection the code expects.

    A different time or meta field or granularity stops start-up with one line (changing
    them needs a new collection and a migration). A different expiry is set with `collMod`
    (which needs the `dbAdmin` role; without it, a warning). A plain collection is accepted
    only on a server that does not make time-series collections at all.
    """
    info = await collection_info(db, spec.name)
    if info is None:
        return
    if info.get("type") == "timeseries":
        problem = timeseries_mismatch(info, spec)
        if problem is not None:
            raise SchemaMismatch(problem)
        expiry = spec.options.get("expireAfterSeconds")
        if expiry is not None and (info.get("options") or {}).get("expireAfterSeconds") != expiry:
            try:
                await db.command("collMod", spec.name, expireAfterSeconds=expiry)
                logger.info("retention updated", extra={"collection": spec.name})
            except OperationFailure as exc:
                logger.warning(
                    "could not update retention (collMod needs the dbAdmin role)",
                    extra={"collection": spec.name, "code": exc.code},
                )
        return
    if await _makes_timeseries(db, spec.options["timeseries"]):
        raise SchemaMismatch(
            f"collection {spec.name!r} is a plain collection, but this server supports "
            "time-series collections: move its data to a time-series collection (README, "
            "'Scaling beyond one server')"
        )


def timeseries_mismatch(info: dict[str, Any], spec: CollectionSpec) -> str | None:
    """Why a time-series collection's `listCollections` entry cannot serve `spec`, or None."""
    wanted = spec.options["timeseries"]
    actual = (info.get("options") or {}).get("timeseries") or {}
    for field_name in ("timeField", "metaField", "granularity"):
        if actual.get(field_name) != wanted[field_name]:
            return (
                f"collection {spec.name!r} has {field_name}={actual.get(field_name)!r}, "
                f"the code needs {wanted[field_name]!r}: migrate it to a new collection"
            )
    return None


async def _makes_timeseries(db: MongoDatabase, options: dict[str, Any]) -> bool:
    """Whether this server creates time-series collections (a throwaway probe collection)."""
    probe = "sensorhub_timeseries_probe"
    try:
        await db.create_collection(probe, timeseries=options)
    except (CollectionInvalid, OperationFailure):
        pass  # exists already (a concurrent probe), or time-series collections are refused
    try:
        info = await collection_info(db, probe)
        return info is not None and info.get("type") == "timeseries"
    finally:
        await db.drop_collection(probe)


async def ensure_collection(db: MongoDatabase, spec: CollectionSpec) -> None:
    """Create the collection with its options unless it exists; then its indexes."""
    if await collection_info(db, spec.name) is None:
        try:
            await db.create_collection(spec.name, **spec.options)
            logger.info("created collection", extra={"collection": spec.name})
        except CollectionInvalid:
            pass  # created by a concurrent start-up (client-side check)
        except OperationFailure as exc:
            if exc.code != NAMESPACE_EXISTS:
                raise
    if spec.indexes:
        await db[spec.name].create_indexes(list(spec.indexes))


async def ensure_schema(
    engine: AIOEngine,
    *,
    models: Iterable[type[Model]],
    collections: Iterable[CollectionSpec],
) -> None:
    """Create every collection and index the app needs; safe to run at every start-up."""
    db = database(engine)
    for spec in collections:
        await ensure_collection(db, spec)
    await engine.configure_database(list(models))


# --- Document I/O for ODMantic models ----------------------------------------------------
# ODMantic gives the models, their indexes and (de)serialisation. Reads and writes go through
# these helpers, in the forms that behave the same on MongoDB and the embedded server
# (README, "Portable MongoDB rules"): `find` rather than ODMantic's aggregation-based finders (the
# embedded server's `$match` skips ObjectId and date values), and whole-document
# `insert_one`/`replace_one` rather than `engine.save()`, whose `$set` of a datetime the
# embedded server stores as a string.

ModelT = TypeVar("ModelT", bound=Model)
Filter = Mapping[str, Any]
Sort = Sequence[tuple[str, int]]


def collection(engine: AIOEngine, model: type[Model]) -> AsyncIOMotorCollection[dict[str, Any]]:
    """The motor collection behind a model."""
    coll: AsyncIOMotorCollection[dict[str, Any]] = engine.get_collection(model)
    return coll


async def find_one(engine: AIOEngine, model: type[ModelT], query: Filter) -> ModelT | None:
    """The first document matching `query`, as a model instance."""
    doc = await collection(engine, model).find_one(dict(query))
    return None if doc is None else model.model_validate_doc(doc)


async def find_by_id(engine: AIOEngine, model: type[ModelT], hex_id: str) -> ModelT | None:
    """The document with this hex `_id`; None for an unknown or malformed id."""
    oid = parse_object_id(hex_id)
    return None if oid is None else await find_one(engine, model, {"_id": oid})


async def find_many(
    engine: AIOEngine,
    model: type[ModelT],
    query: Filter,
    *,
    sort: Sort | None = None,
    limit: int = 0,
) -> list[ModelT]:
    """Documents matching `query`, sorted and limited, as model instances."""
    cursor = collection(engine, model).find(dict(query))
    if sort:
        cursor = cursor.sort(list(sort))
    if limit:
        cursor = cursor.limit(limit)
    return [model.model_validate_doc(doc) async for doc in cursor]


async def insert(engine: AIOEngine, instance: ModelT) -> ModelT:
    """Insert a new document (raises DuplicateKeyError on a unique index clash)."""
    await collection(engine, type(instance)).insert_one(instance.model_dump_doc())
    return instance


async def replace(engine: AIOEngine, instance: ModelT) -> ModelT:
    """Write the whole document back (the portable way to update datetime fields)."""
    doc = instance.model_dump_doc()
    await collection(engine, type(instance)).replace_one({"_id": doc["_id"]}, doc)
    return instance


async def update_fields(engine: AIOEngine, instance: Model, changes: Mapping[str, Any]) -> None:
    """A targeted `$set` of `changes` that stamps `updated_at` with the server's clock.

    Other fields (written concurrently by other writers) are left alone; `$currentDate`
    keeps `updated_at` a date on every server.
    """
    if changes:
        await collection(engine, type(instance)).update_one(
            {"_id": instance.model_dump_doc()["_id"]},
            {"$set": dict(changes), "$currentDate": {"updated_at": True}},
        )


async def delete(engine: AIOEngine, instance: Model) -> None:
    """Delete one document by its id."""
    await collection(engine, type(instance)).delete_one({"_id": instance.model_dump_doc()["_id"]})
