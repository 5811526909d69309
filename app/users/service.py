"""Users: first sight, keeping profiles in step with Firebase, roles, admin management."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from celery import Celery
from odmantic import AIOEngine
from pymongo.errors import DuplicateKeyError

from app.auth import sessions
from app.auth.firebase import FirebaseAuth, FirebaseIdentity
from app.auth.principal import ADMIN_ROLE, Principal, PrincipalKind
from app.core import db
from app.core.config import Settings
from app.core.models import parse_object_id, utcnow
from app.permissions import sharing
from app.users.exceptions import InvalidCursor, UserNotFound
from app.users.models import User
from app.users.schemas import UserPage, UserRead, UserUpdate
from app.worker import outbox

logger = logging.getLogger(__name__)

WELCOME_TEMPLATE = "welcome"


def roles_for(
    settings: Settings, *, admin_claim: bool, email: str | None, email_verified: bool
) -> frozenset[str]:
    """Admin by the Firebase claim, or by a VERIFIED email in an admin domain; never otherwise."""
    if admin_claim:
        return frozenset({ADMIN_ROLE})
    if email and email_verified and email.rpartition("@")[2].lower() in settings.admin_domains:
        return frozenset({ADMIN_ROLE})
    return frozenset()


def principal_for_user(settings: Settings, user: User) -> Principal:
    """The principal of a stored user (API access tokens)."""
    return Principal(
        kind=PrincipalKind.USER,
        uid=user.uid,
        email=user.email,
        email_verified=user.email_verified,
        roles=roles_for(
            settings, admin_claim=user.admin, email=user.email, email_verified=user.email_verified
        ),
    )


def principal_for_identity(
    settings: Settings, identity: FirebaseIdentity, user: User | None
) -> Principal:
    """The principal of a Firebase ID token; a stored decision newer than the token wins."""
    if user is not None and identity.issued_at < user.claims_iat:
        return principal_for_user(settings, user)
    return Principal(
        kind=PrincipalKind.USER,
        uid=identity.uid,
        email=identity.email,
        email_verified=identity.email_verified,
        roles=roles_for(
            settings,
            admin_claim=identity.admin_claim,
            email=identity.email,
            email_verified=identity.email_verified,
        ),
    )


async def get(engine: AIOEngine, *, uid: str) -> User | None:
    """The user with this Firebase uid, or None."""
    return await db.find_one(engine, User, {"uid": uid})


async def get_or_404(engine: AIOEngine, *, uid: str) -> User:
    """The user with this Firebase uid, or 404."""
    user = await get(engine, uid=uid)
    if user is None:
        raise UserNotFound(f"No user with uid {uid!r}")
    return user


def _profile(settings: Settings, identity: FirebaseIdentity) -> dict[str, Any]:
    roles = roles_for(
        settings,
        admin_claim=identity.admin_claim,
        email=identity.email,
        email_verified=identity.email_verified,
    )
    return {
        "email": identity.email,
        "email_verified": identity.email_verified,
        "display_name": identity.display_name,
        "admin": identity.admin_claim,
        "roles": sorted(roles),
    }


async def on_first_sign_in(
    engine: AIOEngine, celery: Celery, *, settings: Settings, identity: FirebaseIdentity
) -> tuple[User, bool]:
    """Create the user the first time they are seen; True when this call created them.

    Everything that happens once per person belongs here (the welcome email now; accepting
    pending invitations later).
    """
    now = utcnow()
    new = User(
        uid=identity.uid,
        claims_iat=identity.issued_at,
        created_at=now,
        updated_at=now,
        last_seen_at=now,
        **_profile(settings, identity),
    )
    doc = new.model_dump_doc()
    doc.pop("_id")
    # An upsert's insert keeps datetimes on both servers, and the unique `uid` index makes
    # concurrent first requests create one document.
    try:
        result = await db.collection(engine, User).update_one(
            {"uid": identity.uid}, {"$setOnInsert": doc}, upsert=True
        )
        created = result.upserted_id is not None
    except DuplicateKeyError:  # a concurrent first request inserted it
        created = False
    user = await get_or_404(engine, uid=identity.uid)
    if created and user.email:
        await outbox.queue_email(
            engine,
            celery,
            to=user.email,
            template=WELCOME_TEMPLATE,
            context={"display_name": user.display_name, "email": user.email},
            dedupe_key=f"welcome:{user.uid}",
        )
    if created and user.email and user.email_verified:
        # Shares sent to this address before the account existed become grants now.
        await sharing.accept_invites(engine, uid=user.uid, email=user.email)
    return user, created


async def sync_identity(
    engine: AIOEngine, *, settings: Settings, user: User, identity: FirebaseIdentity
) -> User:
    """Copy profile and admin claim from a token newer than what is stored; write only changes."""
    if identity.issued_at < user.claims_iat:
        return user
    profile = _profile(settings, identity)
    changes = {k: v for k, v in profile.items() if getattr(user, k) != v}
    if not changes:
        return user
    changes["claims_iat"] = identity.issued_at
    await db.collection(engine, User).update_one(
        # Of two concurrent requests, the newer token's claims are the ones kept.
        {"uid": user.uid, "claims_iat": {"$lte": identity.issued_at}},
        {"$set": changes, "$currentDate": {"updated_at": True}},
    )
    if changes.get("email_verified") and identity.email:
        # Invites wait for a verified address; this is the sign-in that verified it.
        await sharing.accept_invites(engine, uid=user.uid, email=identity.email)
    return user.model_copy(update=changes)


async def touch(engine: AIOEngine, *, settings: Settings, user: User) -> None:
    """Record that the user was seen, at most once per `USER_SEEN_INTERVAL_S`."""
    if utcnow() - user.last_seen_at < timedelta(seconds=settings.user_seen_interval_s):
        return
    await db.collection(engine, User).update_one(
        {"uid": user.uid}, {"$currentDate": {"last_seen_at": True}}
    )


async def record_sight(
    engine: AIOEngine,
    celery: Celery,
    *,
    settings: Settings,
    user: User | None,
    identity: FirebaseIdentity | None,
) -> User:
    """Create, update or touch the user behind an accepted request; the stored user."""
    if user is None:
        if identity is None:
            raise UserNotFound("The user is not known")
        user, _ = await on_first_sign_in(engine, celery, settings=settings, identity=identity)
        return user
    if identity is not None:
        user = await sync_identity(engine, settings=settings, user=user, identity=identity)
    await touch(engine, settings=settings, user=user)
    return user


def _email_prefix_range(prefix: str) -> dict[str, str]:
    # A range on the indexed field instead of a regex: no escaping, and it uses the index.
    prefix = prefix.lower()
    return {"$gte": prefix, "$lt": prefix[:-1] + chr(ord(prefix[-1]) + 1)}


async def list_users(
    engine: AIOEngine, *, limit: int, cursor: str | None, email_prefix: str | None
) -> UserPage:
    """A page of users ordered by creation (`_id`), optionally by email prefix."""
    query: dict[str, Any] = {}
    if cursor is not None:
        after = parse_object_id(cursor)
        if after is None:
            raise InvalidCursor("The cursor is not valid; start again without one")
        query["_id"] = {"$gt": after}
    if email_prefix:
        query["email"] = _email_prefix_range(email_prefix)
    users = await db.find_many(engine, User, query, sort=[("_id", 1)], limit=limit + 1)
    next_cursor = str(users[limit - 1].id) if len(users) > limit else None
    return UserPage(
        items=[UserRead.model_validate(u) for u in users[:limit]], next_cursor=next_cursor
    )


async def update(
    engine: AIOEngine,
    firebase: FirebaseAuth,
    *,
    settings: Settings,
    user: User,
    user_in: UserUpdate,
) -> User:
    """Disable/enable or grant/revoke admin, in Firebase and here."""
    changes: dict[str, Any] = {}
    if user_in.admin is not None:
        if not await firebase.set_admin_claim(user.uid, admin=user_in.admin):
            logger.warning("no Firebase account for user", extra={"uid": user.uid})
        changes["admin"] = user_in.admin
        changes["roles"] = sorted(
            roles_for(
                settings,
                admin_claim=user_in.admin,
                email=user.email,
                email_verified=user.email_verified,
            )
        )
        # ID tokens issued up to this second may predate the new claim: from now on only
        # tokens issued from the next second (which carry it) decide the admin role again.
        changes["claims_iat"] = int(time.time()) + 1
    if user_in.disabled is not None:
        if not await firebase.set_disabled(user.uid, disabled=user_in.disabled):
            logger.warning("no Firebase account for user", extra={"uid": user.uid})
        changes["disabled"] = user_in.disabled
    await db.collection(engine, User).update_one(
        {"uid": user.uid}, {"$set": changes, "$currentDate": {"updated_at": True}}
    )
    if user_in.disabled:
        await sessions.revoke_all_for_user(engine, uid=user.uid)
    return await get_or_404(engine, uid=user.uid)


async def grant_admin_by_email(
    engine: AIOEngine, firebase: FirebaseAuth, *, settings: Settings, email: str
) -> str | None:
    """Make the Firebase account with this email an admin; its uid, or None if none exists."""
    record = await firebase.get_user_by_email(email)
    if record is None:
        return None
    uid = str(record.uid)
    user = await get(engine, uid=uid)
    if user is None:
        # Not signed in yet: the claim reaches Sensorhub with their first ID token.
        await firebase.set_admin_claim(uid, admin=True)
    else:
        await update(engine, firebase, settings=settings, user=user, user_in=UserUpdate(admin=True))
    return uid
