"""Notification events get an index on `digest`: the sweep finds the events held for digests."""

from __future__ import annotations

from odmantic import AIOEngine

from app import schema
from app.core import collections, db
from app.core.config import Settings


async def apply(engine: AIOEngine, settings: Settings) -> None:
    """Create the alert events' indexes (the new `digest, created_ms` one among them)."""
    for spec in schema.collections_(settings):
        if spec.name == collections.ALERT_EVENTS:
            await db.ensure_collection(db.database(engine), spec)
