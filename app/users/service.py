"""Users, as admins manage them: list, look up, disable, promote (in Firebase and here)."""

from __future__ import annotations

import logging
import time
from typing import Any

from odmantic import AIOEngine

from app.auth import identities, sessions
from app.auth.exceptions import UserNotFound
from app.auth.firebase import FirebaseAuth
from app.auth.models import User
from app.auth.principal_cache import PrincipalCache
from app.core import db
from app.core.config import Settings
from app.core.pagination import PageParams, find_page
from app.users.exceptions import EmailNotVerified
from app.users.schemas import UserUpdate

logger = logging.getLogger(__name__)


async def get_or_404(engine: AIOEngine, *, uid: str) -> User:
    """The user with this Firebase uid, or 404."""
    user = await identities.get_user(engine, uid=uid)
    if user is None:
        raise UserNotFound(f"No user with uid {uid!r}")
    return user


def _email_prefix_range(prefix: str) -> dict[str, str]:
    # A range on the indexed field instead of a regex: no escaping, and it uses the index.
    prefix = prefix.lower()
    return {"$gte": prefix, "$lt": prefix[:-1] + chr(ord(prefix[-1]) + 1)}


async def list_(
    engine: AIOEngine, *, page: PageParams, email_prefix: str | None
) -> tuple[list[User], str | None]:
    """A page of users ordered by creation (`_id`), optionally by email prefix."""
    by_email = {"email": _email_prefix_range(email_prefix)} if email_prefix else {}
    return await find_page(engine, User, page, by_email)


async def update(
    engine: AIOEngine,
    firebase: FirebaseAuth,
    *,
    settings: Settings,
    user: User,
    user_in: UserUpdate,
    principals: PrincipalCache | None = None,
) -> User:
    """Disable/enable or grant/revoke admin, in Firebase and here; every API process reads
    the user again on its next request (`principals`)."""
    changes: dict[str, Any] = {}
    if user_in.admin is not None:
        if not await firebase.set_admin_claim(user.uid, admin=user_in.admin):
            logger.warning("no Firebase account for user", extra={"uid": user.uid})
        changes["admin"] = user_in.admin
        changes["roles"] = sorted(
            identities.roles_for(
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
    if principals is not None:
        await principals.user_changed(user.uid)
    return await get_or_404(engine, uid=user.uid)


async def grant_admin_by_email(
    engine: AIOEngine, firebase: FirebaseAuth, *, settings: Settings, email: str
) -> str | None:
    """Make the Firebase account with this email an admin; its uid, or None if none exists.

    An address its owner has not verified proves nothing about who holds the account, so it
    never makes an admin (`EmailNotVerified`).
    """
    record = await firebase.get_user_by_email(email)
    if record is None:
        return None
    if not record.email_verified:
        raise EmailNotVerified(
            f"{email} is not verified in Firebase: an unverified address never makes an admin"
        )
    uid = str(record.uid)
    user = await identities.get_user(engine, uid=uid)
    if user is None:
        # Not signed in yet: the claim reaches Sensorhub with their first ID token.
        await firebase.set_admin_claim(uid, admin=True)
    else:
        await update(engine, firebase, settings=settings, user=user, user_in=UserUpdate(admin=True))
    return uid
