"""The collections and indexes the service needs (all of them, as of version 0.1)."""

from __future__ import annotations

from odmantic import AIOEngine

from app import schema
from app.core import db
from app.core.config import Settings


async def apply(engine: AIOEngine, settings: Settings) -> None:
    """Create every collection (readings as a time-series collection) and index."""
    await db.ensure_schema(
        engine, models=schema.models(), collections=schema.collections_(settings)
    )
