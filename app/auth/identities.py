"""People as identities: their user records, roles and principals, and first sight.

A user record is created the first time a person's Firebase ID token is seen (by any
route, or `POST /auth/session`) and kept in step with newer tokens. What else happens on that
occasion (the welcome email, accepting invites) belongs to other domains: it runs in the
`SignInHook` the app is built with (`app.users.onboarding.welcome`), called from one place,
`record_sight`.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from celery import Celery
from odmantic import AIOEngine
from pymongo.errors import DuplicateKeyError

from app.auth.firebase import FirebaseAccount, FirebaseIdentity
from app.auth.models import User
from app.auth.principal import ADMIN_ROLE, Principal, PrincipalKind
from app.auth.principal_cache import PrincipalCache
from app.auth.seen import SeenRecorder
from app.core import db
from app.core.config import Settings
from app.core.models import utcnow

if TYPE_CHECKING:
    from app.core.services import Services


class SignInHook(Protocol):
    """Side effects of seeing a person: first sight, or the sign-in that verified their email."""

    async def __call__(
        self,
        engine: AIOEngine,
        celery: Celery,
        *,
        user: User,
        first_seen: bool,
        verified_now: bool,
    ) -> None:
        """Run once per occasion; must be idempotent (concurrent first requests may race)."""


def roles_for(
    settings: Settings, *, admin_claim: bool, email: str | None, email_verified: bool
) -> frozenset[str]:
    """Admin by the Firebase claim, or by a VERIFIED email in an admin domain; never otherwise."""
    if admin_claim:
        return frozenset({ADMIN_ROLE})
    if email and email_verified and email.rpartition("@")[2].lower() in settings.admin_domains:
        return frozenset({ADMIN_ROLE})
    return frozenset()


def _user_principal(
    settings: Settings, uid: str, email: str | None, email_verified: bool, *, admin_claim: bool
) -> Principal:
    return Principal(
        kind=PrincipalKind.USER,
        uid=uid,
        email=email,
        email_verified=email_verified,
        roles=roles_for(
            settings, admin_claim=admin_claim, email=email, email_verified=email_verified
        ),
    )


def principal_for_user(settings: Settings, user: User) -> Principal:
    """The principal of a stored user (API access tokens)."""
    return _user_principal(
        settings, user.uid, user.email, user.email_verified, admin_claim=user.admin
    )


def principal_for_identity(
    settings: Settings, identity: FirebaseIdentity, user: User | None
) -> Principal:
    """The principal of a Firebase ID token; a stored decision newer than the token wins."""
    if user is not None and identity.issued_at < user.claims_iat:
        return principal_for_user(settings, user)
    return _user_principal(
        settings,
        identity.uid,
        identity.email,
        identity.email_verified,
        admin_claim=identity.admin_claim,
    )


async def get_user(engine: AIOEngine, *, uid: str) -> User | None:
    """The user with this Firebase uid, or None."""
    return await db.find_one(engine, User, {"uid": uid})


async def uid_for_verified_email(engine: AIOEngine, *, email: str) -> str | None:
    """The uid of the user whose VERIFIED email this is (lowercase), if any.

    An unverified address proves nothing about who owns the mailbox.
    """
    user = await db.find_one(engine, User, {"email": email, "email_verified": True})
    return None if user is None else user.uid


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


async def create_user(
    engine: AIOEngine, *, settings: Settings, identity: FirebaseIdentity
) -> tuple[User, bool]:
    """The person's user record, created if this is the first time; True when this call did.

    An upsert's insert keeps datetimes on both servers, and the unique `uid` index makes
    concurrent first requests create one document.
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
    try:
        result = await db.collection(engine, User).update_one(
            {"uid": identity.uid}, {"$setOnInsert": doc}, upsert=True
        )
        created = result.upserted_id is not None
    except DuplicateKeyError:  # a concurrent first request inserted it
        created = False
    user = await get_user(engine, uid=identity.uid)
    assert user is not None  # just written (or by the concurrent request that won)
    return user, created


async def sync_identity(
    engine: AIOEngine, *, settings: Settings, user: User, identity: FirebaseIdentity
) -> tuple[User, bool]:
    """Copy profile and admin claim from a token newer than what is stored; write only changes.

    Returns the user and whether this token is the one that verified the email.
    """
    if identity.issued_at < user.claims_iat:
        return user, False
    profile = _profile(settings, identity)
    changes = {k: v for k, v in profile.items() if getattr(user, k) != v}
    if not changes:
        return user, False
    changes["claims_iat"] = identity.issued_at
    await db.collection(engine, User).update_one(
        # Of two concurrent requests, the newer token's claims are the ones kept.
        {"uid": user.uid, "claims_iat": {"$lte": identity.issued_at}},
        {"$set": changes, "$currentDate": {"updated_at": True}},
    )
    verified_now = bool(changes.get("email_verified")) and identity.email is not None
    return user.model_copy(update=changes), verified_now


async def sync_account(
    engine: AIOEngine, *, settings: Settings, user: User, account: FirebaseAccount
) -> tuple[User, bool]:
    """Copy the admin claim and email verification from Firebase's account, when they changed.

    Refreshes call this, so an admin claim removed in Firebase (or a domain removed from
    ADMIN_EMAIL_DOMAINS) stops admin rights at the next refresh. True when this is the
    change that verified the email.
    """
    roles = roles_for(
        settings,
        admin_claim=account.admin_claim,
        email=user.email,
        email_verified=account.email_verified,
    )
    changes: dict[str, Any] = {
        "admin": account.admin_claim,
        "email_verified": account.email_verified,
        "roles": sorted(roles),
    }
    changes = {k: v for k, v in changes.items() if getattr(user, k) != v}
    if not changes:
        return user, False
    # Older ID tokens (still carrying the old claim) no longer decide the role.
    changes["claims_iat"] = max(user.claims_iat, int(time.time()) + 1)
    await db.collection(engine, User).update_one(
        {"uid": user.uid}, {"$set": changes, "$currentDate": {"updated_at": True}}
    )
    return user.model_copy(update=changes), changes.get("email_verified") is True


async def touch(engine: AIOEngine, *, settings: Settings, user: User) -> None:
    """Record that the user was seen, at most once per `USER_SEEN_INTERVAL_S`."""
    if utcnow() - user.last_seen_at < timedelta(seconds=settings.user_seen_interval_s):
        return
    await db.collection(engine, User).update_one(
        {"uid": user.uid}, {"$currentDate": {"last_seen_at": True}}
    )


async def record_sight(
    services: Services,
    *,
    user: User | None,
    identity: FirebaseIdentity | None,
    seen: SeenRecorder | None = None,
    principals: PrincipalCache | None = None,
) -> User:
    """Create, update or touch the user behind an accepted request; the stored user.

    The one place where first-sight side effects are triggered (through
    `services.on_sign_in`). A profile or claim change is announced to `principals` (sessions
    of the user hold roles); with `seen`, "last seen" is written in the background.
    """
    engine, settings = services.engine, services.settings
    first_seen = verified_now = False
    if user is None:
        if identity is None:
            raise LookupError("a request with an access token for an unknown user")
        user, first_seen = await create_user(engine, settings=settings, identity=identity)
        verified_now = first_seen and user.email_verified
    else:
        if identity is not None:
            stored = user
            user, verified_now = await sync_identity(
                engine, settings=settings, user=user, identity=identity
            )
            if user is not stored and principals is not None:
                await principals.user_changed(user.uid)
        if seen is not None:
            seen.seen(engine, user)
        else:
            await touch(engine, settings=settings, user=user)
    if first_seen or verified_now:
        await services.on_sign_in(
            engine, services.celery, user=user, first_seen=first_seen, verified_now=verified_now
        )
    return user
