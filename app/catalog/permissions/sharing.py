"""Grants and invites on one resource: list, set, remove; invites become grants at sign-in."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from email_validator import EmailNotValidError, validate_email
from odmantic import AIOEngine
from pymongo.errors import DuplicateKeyError

from app.auth import identities
from app.auth.exceptions import UserNotFound
from app.auth.principal import Principal
from app.catalog.permissions.access_cache import AccessCache
from app.catalog.permissions.exceptions import InvalidEmail, LastOwner, TooManyShares
from app.catalog.permissions.models import Grant, Invite, ResourceType, Role
from app.catalog.permissions.service import Securable
from app.core import db
from app.core.models import utcnow
from app.emails import outbox

if TYPE_CHECKING:
    from app.core.services import Services

logger = logging.getLogger(__name__)

INVITE_TEMPLATE = "share_invite"


@dataclass(frozen=True, slots=True)
class Share:
    """One entry of a resource's sharing list: a grant (active) or an invite (pending)."""

    role: Role
    status: str
    created_at: datetime
    user_id: str | None = None
    email: str | None = None


def _grant_share(grant: Grant) -> Share:
    return Share(
        role=grant.role, status="active", created_at=grant.created_at, user_id=grant.user_uid
    )


def _invite_share(invite: Invite) -> Share:
    return Share(
        role=invite.role, status="pending", created_at=invite.created_at, email=invite.email
    )


def is_email(user_ref: str) -> bool:
    """`user_id` path values containing `@` are email addresses."""
    return "@" in user_ref


def normalise_email(email: str) -> str:
    """Exactly one syntactically valid address, lower-cased (422 otherwise).

    Checked with email-validator, so a path such as `a@x.com,b@y.com` (several recipients
    for one invitation) or one with spaces, quotes or control characters is refused.
    """
    address = email.strip()
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(f"not one valid email address: {exc}") from None
    # Compared with Firebase's (lower-cased) address as typed, not an IDNA-normalised form.
    return address.lower()


async def grant_owner(engine: AIOEngine, *, resource: Securable, principal: Principal) -> None:
    """Make the creating user the owner (the master token sees everything without a grant)."""
    if not principal.is_user:
        return
    uid = principal.uid
    grant = Grant(
        resource_type=resource.kind.resource_type,
        resource_id=str(resource.id),
        user_uid=uid,
        role=Role.OWNER,
        granted_by=uid,
    )
    await db.insert(engine, grant)


async def list_shares(engine: AIOEngine, *, resource: Securable) -> list[Share]:
    """Every grant and pending invite on the resource itself (not inherited ones)."""
    key = {"resource_type": resource.kind.resource_type, "resource_id": str(resource.id)}
    grants = await db.find_many(engine, Grant, key, sort=[("_id", 1)])
    invites = await db.find_many(engine, Invite, key, sort=[("_id", 1)])
    return [*map(_grant_share, grants), *map(_invite_share, invites)]


async def _owner_count(engine: AIOEngine, key: dict[str, str]) -> int:
    coll = db.collection(engine, Grant)
    return int(await coll.count_documents({**key, "role": Role.OWNER}))


async def _check_room(engine: AIOEngine, key: dict[str, str], *, cap: int) -> None:
    grants = await db.collection(engine, Grant).count_documents(key)
    invites = await db.collection(engine, Invite).count_documents(key)
    if grants + invites >= cap:
        raise TooManyShares(f"a resource may carry at most {cap} grants and invites")


async def set_share(
    services: Services,
    *,
    principal: Principal,
    resource: Securable,
    resource_name: str,
    user_ref: str,
    role: Role,
    spend_invite: Callable[[], Awaitable[None]],
) -> Share:
    """Grant `role` to a user id or email; an email without an account gets an invite, and a
    resource carries at most SHARES_PER_RESOURCE_MAX of both.

    A changed role of an existing grant is announced through the access cache (it may be
    lower). `spend_invite` counts a new invitation against the inviter's quota (429 when
    spent); it runs only when an invitation email would be sent.
    """
    engine, cap = services.engine, services.settings.shares_per_resource_max
    rtype = resource.kind.resource_type
    key = {"resource_type": rtype.value, "resource_id": str(resource.id)}
    if is_email(user_ref):
        email = normalise_email(user_ref)
        uid = await identities.uid_for_verified_email(engine, email=email)
        if uid is None:
            invite = Invite(**_target(key), email=email, role=role, invited_by=principal.uid)
            return await _set_invite(
                services, invite, inviter=principal, name=resource_name, spend=spend_invite
            )
    else:
        uid = user_ref
        if await identities.get_user(engine, uid=uid) is None:
            raise UserNotFound(f"no user with id {uid!r}")
    coll = db.collection(engine, Grant)
    existing = await db.find_one(engine, Grant, {**key, "user_uid": uid})
    if existing is None:
        await _check_room(engine, key, cap=cap)
        grant = Grant(**_target(key), user_uid=uid, role=role, granted_by=principal.uid)
        # A concurrent PUT for the same user may win: ours then applies on top.
        await _insert_share(engine, grant, recipient={"user_uid": uid})
        return _grant_share(grant)
    if existing.role is Role.OWNER and role is not Role.OWNER:
        await _demote_owner(engine, key=key, uid=uid, role=role)
    else:
        await coll.update_one({"_id": existing.id}, {"$set": {"role": role.value}})
    if existing.role is not role:
        await services.access.grants_changed([uid])
    existing.role = role
    return _grant_share(existing)


def _target(key: dict[str, str]) -> dict[str, Any]:
    """The resource fields of a new grant or invite."""
    return {"resource_type": ResourceType(key["resource_type"]), "resource_id": key["resource_id"]}


async def _insert_share(
    engine: AIOEngine, share: Grant | Invite, *, recipient: dict[str, str]
) -> bool:
    """Store a new grant or invite; when a concurrent request stored the same one first, set
    our role on it instead and return False."""
    try:
        await db.insert(engine, share)
    except DuplicateKeyError:
        key = {"resource_type": share.resource_type.value, "resource_id": share.resource_id}
        await db.collection(engine, type(share)).update_one(
            {**key, **recipient}, {"$set": {"role": share.role.value}}
        )
        return False
    return True


async def _demote_owner(engine: AIOEngine, *, key: dict[str, str], uid: str, role: Role) -> None:
    """Lower an owner's role unless they are the last owner (checked again after writing)."""
    if await _owner_count(engine, key) <= 1:
        raise LastOwner()
    coll = db.collection(engine, Grant)
    await coll.update_one({**key, "user_uid": uid}, {"$set": {"role": role.value}})
    if await _owner_count(engine, key) == 0:  # a concurrent demotion raced us: undo ours
        await coll.update_one({**key, "user_uid": uid}, {"$set": {"role": Role.OWNER.value}})
        raise LastOwner()


async def _set_invite(
    services: Services,
    invite: Invite,
    *,
    inviter: Principal,
    name: str,
    spend: Callable[[], Awaitable[None]],
) -> Share:
    """Store `invite`, or set its role on the pending invite to the same email and resource;
    email the invitee (about the resource called `name`) the first time only."""
    engine, role = services.engine, invite.role
    key = {"resource_type": invite.resource_type.value, "resource_id": invite.resource_id}
    existing = await db.find_one(engine, Invite, {**key, "email": invite.email})
    if existing is not None:
        await db.collection(engine, Invite).update_one(
            {"_id": existing.id}, {"$set": {"role": role.value}}
        )
        existing.role = role
        return _invite_share(existing)
    await _check_room(engine, key, cap=services.settings.shares_per_resource_max)
    await spend()
    if not await _insert_share(engine, invite, recipient={"email": invite.email}):
        return _invite_share(invite)  # a concurrent PUT stored it (and queued the email)
    await outbox.queue_email(
        engine,
        services.celery,
        to=invite.email,
        template=INVITE_TEMPLATE,
        context={
            **key,
            "resource_name": name,
            "role": role.value,
            "invited_by": inviter.email or inviter.uid,
        },
        dedupe_key=f"share_invite:{invite.id}",
    )
    return _invite_share(invite)


async def remove_share(
    engine: AIOEngine, *, resource: Securable, user_ref: str, access: AccessCache | None = None
) -> None:
    """Remove a user's grant (by uid or email) and any invite to that email; every API
    process stops honouring it before this returns (`access`)."""
    rtype = resource.kind.resource_type
    key = {"resource_type": rtype.value, "resource_id": str(resource.id)}
    removed = 0
    uid: str | None = user_ref
    if is_email(user_ref):
        email = normalise_email(user_ref)
        result = await db.collection(engine, Invite).delete_one({**key, "email": email})
        removed += result.deleted_count
        uid = await identities.uid_for_verified_email(engine, email=email)
    if uid is not None:
        removed_grants = await _remove_grant(engine, key=key, uid=uid)
        if removed_grants and access is not None:
            await access.grants_changed([uid])
        removed += removed_grants
    if not removed:
        raise UserNotFound("this user has no grant or invite on this resource")


async def _remove_grant(engine: AIOEngine, *, key: dict[str, str], uid: str) -> int:
    """Delete one grant; the last owner stays (409), checked again after deleting."""
    grant = await db.find_one(engine, Grant, {**key, "user_uid": uid})
    if grant is None:
        return 0
    if grant.role is Role.OWNER and await _owner_count(engine, key) <= 1:
        raise LastOwner()
    await db.delete(engine, grant)
    if grant.role is Role.OWNER and await _owner_count(engine, key) == 0:
        await db.insert(engine, grant)  # a concurrent removal raced us: put ours back
        raise LastOwner()
    return 1


async def delete_for(engine: AIOEngine, *, resource_type: ResourceType, ids: list[str]) -> None:
    """Drop the grants and invites of deleted resources."""
    for part in db.chunks(ids):
        query = {"resource_type": resource_type.value, "resource_id": {"$in": part}}
        await db.collection(engine, Grant).delete_many(query)
        await db.collection(engine, Invite).delete_many(query)


async def accept_invites(engine: AIOEngine, *, uid: str, email: str | None) -> int:
    """Turn the pending invites to `email` into grants for `uid`; returns how many.

    Idempotent, so it may run at every sign-in. Call it only with a verified email: the
    invite was addressed to whoever controls that mailbox.
    """
    if not email:
        return 0
    invites = await db.find_many(engine, Invite, {"email": email.strip().lower()})
    accepted = 0
    for invite in invites:
        grant = Grant(
            resource_type=invite.resource_type,
            resource_id=invite.resource_id,
            user_uid=uid,
            role=invite.role,
            granted_by=invite.invited_by,
            created_at=utcnow(),
        )
        try:
            await db.insert(engine, grant)
            accepted += 1
        except DuplicateKeyError:
            logger.info("invite for an existing grant dropped", extra={"invite": str(invite.id)})
        await db.delete(engine, invite)
    return accepted
