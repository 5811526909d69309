"""Apply and list schema migrations; the API refuses to start while any is pending."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from odmantic import AIOEngine

from app.core import collections, leases
from app.core.config import Settings
from app.core.db import database
from app.core.models import utcnow
from app.migrations.steps import STEPS, Step

logger = logging.getLogger(__name__)

# Long enough for the slowest step on a large database; a holder that died is replaced after.
LEASE_HOLD_S = 3600.0


class MigrationsPending(RuntimeError):
    """The database is behind the code: run `python -m app migrate` first."""


@dataclass(frozen=True)
class StepStatus:
    """One step and when it was applied (None: pending)."""

    id: str
    description: str
    applied_at: datetime | None


async def status(engine: AIOEngine) -> list[StepStatus]:
    """Every step in order, with the time it was applied or None."""
    coll = database(engine)[collections.SCHEMA_MIGRATIONS]
    applied = {doc["_id"]: doc["applied_at"] async for doc in coll.find({})}
    return [StepStatus(s.id, s.description, applied.get(s.id)) for s in STEPS]


async def pending(engine: AIOEngine) -> list[Step]:
    """The steps not yet applied, in order."""
    done = {s.id for s in await status(engine) if s.applied_at is not None}
    return [s for s in STEPS if s.id not in done]


async def apply_pending(engine: AIOEngine, settings: Settings, *, wait_s: float = 600) -> list[str]:
    """Apply every pending step in order, under the migrations lease; the ids applied."""
    applied: list[str] = []
    async with leases.lease(engine, "schema-migrations", hold_s=LEASE_HOLD_S, wait_s=wait_s):
        coll = database(engine)[collections.SCHEMA_MIGRATIONS]
        for step in await pending(engine):  # read again inside the lease
            logger.info("applying migration", extra={"migration": step.id})
            await step.apply(engine, settings)
            await coll.insert_one(
                {"_id": step.id, "description": step.description, "applied_at": utcnow()}
            )
            applied.append(step.id)
    return applied


async def ensure_current(engine: AIOEngine, settings: Settings) -> None:
    """At start-up: apply pending steps when `MIGRATIONS_AUTO_APPLY`, otherwise refuse."""
    waiting = await pending(engine)
    if not waiting:
        return
    if settings.migrations_auto_apply:
        await apply_pending(engine, settings)
        return
    raise MigrationsPending(
        f"{len(waiting)} schema migration(s) pending ({', '.join(s.id for s in waiting)}): "
        "run `python -m app migrate`"
    )
