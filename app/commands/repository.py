"""MongoDB operations on commands: each state change is one conditional, atomic write.

Every transition names the state it leaves in its filter, so two processes (or a poll and
the sweep) can never both apply one: the loser matches nothing. Filters keep `_id` and any
`$or` inside one `$and` (README, "Portable MongoDB rules").
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from bson import ObjectId
from motor.motor_asyncio import AsyncIOMotorCollection
from odmantic import AIOEngine
from pymongo import ReturnDocument

from app.catalog.models import Product
from app.commands.models import PENDING_STATES, Command, CommandState
from app.core import collections, db
from app.core.db import database
from app.core.models import parse_object_id
from app.core.pagination import PageParams, and_filters, next_cursor

Collection = AsyncIOMotorCollection[dict[str, Any]]


def now_ms() -> int:
    """The current time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def _commands(engine: AIOEngine) -> Collection:
    return db.collection(engine, Command)


def _parse(doc: dict[str, Any] | None) -> Command | None:
    return None if doc is None else Command.model_validate_doc(doc)


def deliverable(device_id: str, *, at_ms: int, max_attempts: int) -> dict[str, Any]:
    """A device's commands a poll may take: queued, or delivered and overdue with attempts
    left; never past their TTL."""
    overdue = {
        "$and": [
            {"state": CommandState.DELIVERED.value},
            {"ack_deadline_ms": {"$lt": at_ms}},
            {"attempts": {"$lt": max_attempts}},
        ]
    }
    return {
        "$and": [
            {"device_id": device_id},
            {"expires_at_ms": {"$gt": at_ms}},
            {"$or": [{"state": CommandState.QUEUED.value}, overdue]},
        ]
    }


async def next_seq(engine: AIOEngine, device_id: str) -> int:
    """The next number in the device's command order (atomic, across processes)."""
    doc = await database(engine)[collections.COMMAND_SEQUENCES].find_one_and_update(
        {"_id": device_id},
        {"$inc": {"seq": 1}},
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )
    return int(doc["seq"])


async def product_commands(engine: AIOEngine, product_id: str) -> list[dict[str, Any]]:
    """The command declarations of a product (only that field is read)."""
    oid = parse_object_id(product_id)
    doc = None
    if oid is not None:
        doc = await db.collection(engine, Product).find_one({"_id": oid}, {"commands": 1})
    commands: list[dict[str, Any]] = (doc or {}).get("commands") or []
    return commands


async def insert(engine: AIOEngine, command: Command) -> None:
    """Store a new command (DuplicateKeyError when its idempotency key is taken)."""
    await _commands(engine).insert_one(command.model_dump_doc())


async def find_by_key(engine: AIOEngine, device_id: str, key: str) -> Command | None:
    """The device's command sent with this idempotency key."""
    return _parse(
        await _commands(engine).find_one(
            {"$and": [{"device_id": device_id}, {"idempotency_key": key}]}
        )
    )


async def get(engine: AIOEngine, device_id: str, command_id: ObjectId) -> Command | None:
    """The device's command with this id."""
    return _parse(
        await _commands(engine).find_one({"$and": [{"_id": command_id}, {"device_id": device_id}]})
    )


async def count_pending(engine: AIOEngine, device_id: str) -> int:
    """Commands of the device still queued or delivered."""
    return await _commands(engine).count_documents(
        {"device_id": device_id, "state": {"$in": list(PENDING_STATES)}}
    )


async def list_page(
    engine: AIOEngine, device_id: str, *, page: PageParams, state: CommandState | None
) -> tuple[list[Command], str | None]:
    """One page (by `_id`, oldest first) of the device's commands."""
    query = and_filters(
        {"device_id": device_id},
        {"state": state.value} if state is not None else {},
        page.filter(),
    )
    cursor = _commands(engine).find(query).sort("_id", 1).limit(page.limit + 1)
    rows = [Command.model_validate_doc(doc) async for doc in cursor]
    return next_cursor(rows, page.limit)


async def claim(
    engine: AIOEngine, device_id: str, *, ack_timeout_ms: int, max_attempts: int
) -> Command | None:
    """Mark the device's oldest deliverable command delivered, with a new delivery id."""
    at = now_ms()
    doc = await _commands(engine).find_one_and_update(
        deliverable(device_id, at_ms=at, max_attempts=max_attempts),
        {
            "$set": {
                "state": CommandState.DELIVERED.value,
                "delivery_id": secrets.token_hex(16),
                "delivered_at_ms": at,
                "ack_deadline_ms": at + ack_timeout_ms,
            },
            "$inc": {"attempts": 1},
        },
        sort=[("seq", 1)],
        return_document=ReturnDocument.AFTER,
    )
    return _parse(doc)


async def finish_delivery(
    engine: AIOEngine,
    device_id: str,
    command_id: ObjectId,
    *,
    delivery_id: str,
    state: CommandState,
    result: dict[str, Any] | None,
) -> Command | None:
    """Record the result of the current delivery; None when it is not current."""
    doc = await _commands(engine).find_one_and_update(
        {
            "$and": [
                {"_id": command_id},
                {"device_id": device_id},
                # Queued too: an overdue delivery the sweep put back, not yet redelivered, may
                # still be answered (the device did act on it).
                {"state": {"$in": list(PENDING_STATES)}},
                {"delivery_id": delivery_id},
            ]
        },
        {"$set": {"state": state.value, "result": result, "finished_at_ms": now_ms()}},
        return_document=ReturnDocument.AFTER,
    )
    return _parse(doc)


async def cancel(engine: AIOEngine, device_id: str, command_id: ObjectId) -> Command | None:
    """Cancel the command if it is waiting for delivery (queued, or an overdue delivery that
    would be redelivered); None otherwise."""
    at = now_ms()
    overdue = {"$and": [{"state": CommandState.DELIVERED.value}, {"ack_deadline_ms": {"$lt": at}}]}
    doc = await _commands(engine).find_one_and_update(
        {
            "$and": [
                {"_id": command_id},
                {"device_id": device_id},
                {"$or": [{"state": CommandState.QUEUED.value}, overdue]},
            ]
        },
        {"$set": {"state": CommandState.CANCELLED.value, "finished_at_ms": at}},
        return_document=ReturnDocument.AFTER,
    )
    return _parse(doc)
