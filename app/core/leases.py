"""Named leases in MongoDB: at most one holder at a time, across every API process.

For rare operations that must not interleave (e.g. folder moves): the holder inserts the
lease document; others wait, and take it over only once its lease has run out (a holder that
died). Times are integer epoch milliseconds, which every server compares exactly.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from odmantic import AIOEngine
from pymongo.errors import DuplicateKeyError

from app.core import backoff, collections
from app.core.db import database
from app.core.errors import ServiceUnavailable


class LeaseBusy(ServiceUnavailable):
    """Another request holds the lease for longer than this one may wait."""

    type = "operation-in-progress"
    title = "Another operation is in progress"


def _busy() -> LeaseBusy:
    return LeaseBusy(
        "another such operation is in progress; retry shortly", headers={"Retry-After": "1"}
    )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@asynccontextmanager
async def lease(
    engine: AIOEngine, name: str, *, hold_s: float, wait_s: float
) -> AsyncIterator[None]:
    """Hold the lease `name` for the block (at most `hold_s`); 503 after waiting `wait_s`."""
    leases = database(engine)[collections.LEASES]
    token = secrets.token_hex(8)

    async def take() -> bool:
        until = _now_ms() + int(hold_s * 1000)
        try:
            await leases.insert_one({"_id": name, "owner": token, "until_ms": until})
            return True
        except DuplicateKeyError:
            taken = await leases.update_one(
                {"$and": [{"_id": name}, {"until_ms": {"$lt": _now_ms()}}]},
                {"$set": {"owner": token, "until_ms": until}},
            )
            return bool(taken.modified_count)

    await backoff.until_done(take, wait_s=wait_s, busy=_busy, max_delay_s=0.2)
    try:
        yield
    finally:
        await leases.delete_one({"_id": name, "owner": token})
