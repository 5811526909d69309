"""How the permissions domain finds users: the seam to the users domain (identity)."""

from __future__ import annotations

from odmantic import AIOEngine

from app.core import db


async def uid_for_email(engine: AIOEngine, *, email: str) -> str | None:
    """The uid of the user with this (lowercase) email, if any."""
    doc = await db.database(engine)["users"].find_one({"email": email}, {"uid": 1})
    return None if doc is None else str(doc["uid"])


async def user_exists(engine: AIOEngine, *, uid: str) -> bool:
    """True when a user with this uid has signed in at least once."""
    return await db.database(engine)["users"].find_one({"uid": uid}, {"_id": 1}) is not None
