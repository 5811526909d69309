"""The MongoDB client and ODMantic engine, and idempotent collection and index bootstrap.

Motor and ODMantic stay behind this module and the few `repository.py` modules, so that a
later move to PyMongo's async client touches only those files.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

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


async def ping(client: MongoClient) -> None:
    """Raise unless MongoDB answers a ping."""
    await client.admin.command("ping")


async def ensure_collection(db: MongoDatabase, spec: CollectionSpec) -> None:
    """Create the collection with its options unless it exists; then its indexes."""
    existing = await db.list_collection_names(filter={"name": spec.name})
    if not existing:
        try:
            await db.create_collection(spec.name, **spec.options)
            logger.info("created collection", extra={"collection": spec.name})
        except CollectionInvalid:
            pass  # created by a concurrent start-up (client-side check)
        except OperationFailure as exc:
            if exc.code != NAMESPACE_EXISTS:
                raise
    elif "expireAfterSeconds" in spec.options:
        # Keep retention in step with the setting on an existing collection.
        try:
            await db.command(
                "collMod", spec.name, expireAfterSeconds=spec.options["expireAfterSeconds"]
            )
        except OperationFailure as exc:
            logger.warning(
                "could not update retention", extra={"collection": spec.name, "code": exc.code}
            )
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
