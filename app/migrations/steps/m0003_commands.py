"""The device commands' collections and indexes (app/commands)."""

from __future__ import annotations

from odmantic import AIOEngine

from app.commands.models import Command
from app.core import collections, db
from app.core.config import Settings
from app.core.db import CollectionSpec


async def apply(engine: AIOEngine, settings: Settings) -> None:
    """Create `commands` with its indexes and the per-device sequence collection."""
    await db.ensure_schema(
        engine,
        models=[Command],
        collections=[CollectionSpec(name=collections.COMMAND_SEQUENCES)],
    )
