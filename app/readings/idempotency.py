"""Idempotency keys: a retried request with the same key stores nothing and gets the first answer.

The first request with a key claims it (an insert on the unique (device_id, key) index);
concurrent retries find the claim and wait, polling, until its answer is recorded, then
replay it. A request that fails before its readings are stored releases the key. A claim whose
owner died (lease run out) is taken over by one retry. Keys expire after `IDEMPOTENCY_TTL_HOURS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bson import ObjectId
from odmantic import AIOEngine
from pymongo.errors import PyMongoError

from app.core.idempotency import IdempotencyKeyReused
from app.core.models import utcnow
from app.readings import repository
from app.readings.exceptions import (
    IdempotencyInProgress,
)


@dataclass(frozen=True, slots=True)
class Claim:
    """This request owns the key (`replay` is None), or `replay` is the first answer."""

    key_id: ObjectId
    replay: dict[str, Any] | None
    # Taken over from an earlier attempt, which may have stored some of the readings.
    resumed: bool = False


def fingerprint(body: bytes) -> str:
    """What identifies a request body (a retry sends the same bytes)."""
    return hashlib.sha256(body).hexdigest()


def _now_ms() -> int:
    return int(time.time() * 1000)


async def claim(
    engine: AIOEngine,
    *,
    device_id: str,
    key: str,
    body_fingerprint: str,
    ttl: timedelta,
    wait_s: float,
    lease_s: float = 60.0,
) -> Claim:
    """Own the key, or wait for the first request's answer (409 if it takes over `wait_s`)."""
    deadline = time.monotonic() + wait_s
    lease_ms = int(lease_s * 1000)
    delay = 0.01
    while True:
        now_ms = _now_ms()
        key_id = ObjectId()
        doc: dict[str, Any] = {
            "_id": key_id,
            "device_id": device_id,
            "key": key,
            "fingerprint": body_fingerprint,
            "state": "pending",
            "lease_until_ms": now_ms + lease_ms,
            "response": None,
            "expires_at": utcnow() + ttl,
        }
        if await repository.insert_key(engine, doc):
            return Claim(key_id=key_id, replay=None)
        existing = await repository.find_key(engine, device_id, key)
        if existing is not None:
            if existing.get("fingerprint") != body_fingerprint:
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was used with a different request body"
                )
            if existing.get("state") == "done" and existing.get("response") is not None:
                return Claim(key_id=existing["_id"], replay=existing["response"])
            lease = int(existing.get("lease_until_ms", 0))
            if lease < now_ms and await repository.take_over_key(
                engine, existing["_id"], lease=lease, new_lease=now_ms + lease_ms
            ):
                return Claim(key_id=existing["_id"], replay=None, resumed=True)
        if time.monotonic() >= deadline:
            raise IdempotencyInProgress(
                "A request with this Idempotency-Key is still being processed; retry later",
                headers={"Retry-After": "1"},
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)


async def complete(engine: AIOEngine, key_id: ObjectId, response: dict[str, Any]) -> None:
    """Record the answer for retries."""
    await repository.complete_keys(engine, [repository.complete_key_op(key_id, response)])


def assign_ids(docs: list[dict[str, Any]], key_id: ObjectId) -> None:
    """Give a keyed request's readings `_id`s derived from the key and their position.

    Every attempt of the request (the key's id survives a take-over) then writes the same
    ids, so a retry after an unknown outcome can query them back and store only the missing
    ones; a time-series collection has no unique index to refuse a second copy. The key's
    4-byte time prefix keeps the ids in roughly creation order, as ObjectIds are.
    """
    prefix = key_id.binary
    for i, doc in enumerate(docs):
        digest = hashlib.sha256(prefix + i.to_bytes(4, "big")).digest()
        doc["_id"] = ObjectId(prefix[:4] + digest[:8])


async def keep_for_retry(engine: AIOEngine, key_id: ObjectId) -> None:
    """After an unknown outcome: keep the key, and let the next retry take it over at once."""
    with contextlib.suppress(PyMongoError):  # the database may still be away; the lease ends
        await repository.expire_key_lease(engine, key_id)


async def release(engine: AIOEngine, key_id: ObjectId) -> None:
    """Let a retry run again after a failure that stored nothing."""
    await repository.release_key(engine, key_id)
