"""How the permissions domain finds users: the seam to the users domain (identity)."""

from __future__ import annotations

from odmantic import AIOEngine

from app.core import db
from app.users.models import User


async def uid_for_email(engine: AIOEngine, *, email: str) -> str | None:
    """The uid of the user whose VERIFIED email this is (lowercase), if any.

    An unverified address proves nothing about who owns the mailbox, so it gets an invite.
    """
    user = await db.find_one(engine, User, {"email": email, "email_verified": True})
    return None if user is None else user.uid


async def user_exists(engine: AIOEngine, *, uid: str) -> bool:
    """True when a user with this uid has signed in at least once."""
    return await db.find_one(engine, User, {"uid": uid}) is not None
