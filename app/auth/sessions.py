"""Storage of refresh-token families: spend once, revoke a family, revoke a user's sessions."""

from __future__ import annotations

from datetime import datetime

from odmantic import AIOEngine

from app.auth.exceptions import InvalidCredentials, RefreshTokenReused
from app.auth.models import Session
from app.core import db


async def record(
    engine: AIOEngine, *, jti: str, family_id: str, uid: str, expires_at: datetime
) -> Session:
    """Store a freshly issued refresh token of a family."""
    return await db.insert(
        engine, Session(jti=jti, family_id=family_id, uid=uid, expires_at=expires_at)
    )


async def spend(engine: AIOEngine, *, jti: str, family_id: str, uid: str) -> None:
    """Mark a refresh token used; a second use revokes its whole family (theft detection).

    The conditional update is atomic, so of two concurrent refreshes with one token exactly
    one wins; the other is a reuse.
    """
    coll = db.collection(engine, Session)
    result = await coll.update_one(
        {"jti": jti, "family_id": family_id, "uid": uid, "spent": False, "revoked": False},
        {"$set": {"spent": True}},
    )
    if result.modified_count == 1:
        return
    known = await coll.find_one({"jti": jti}, {"spent": 1, "revoked": 1})
    if known is None or known.get("revoked"):
        raise InvalidCredentials("The session has ended; sign in again")
    await revoke_family(engine, family_id=family_id)
    raise RefreshTokenReused(
        "This refresh token was already used; every token of its session is now revoked. "
        "Sign in again."
    )


async def is_family_revoked(engine: AIOEngine, *, family_id: str) -> bool:
    """True once any token of the family has been revoked (logout, reuse, disabled user)."""
    doc = await db.collection(engine, Session).find_one(
        {"family_id": family_id, "revoked": True}, {"_id": 1}
    )
    return doc is not None


async def revoke_family(engine: AIOEngine, *, family_id: str) -> None:
    """Revoke every token of a session family."""
    await db.collection(engine, Session).update_many(
        {"family_id": family_id}, {"$set": {"revoked": True}}
    )


async def revoke_all_for_user(engine: AIOEngine, *, uid: str) -> None:
    """Revoke every session of a user (used when an admin disables the account)."""
    await db.collection(engine, Session).update_many({"uid": uid}, {"$set": {"revoked": True}})
