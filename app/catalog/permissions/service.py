"""The one place that decides access: roles from grants, inherited down the folder tree.

`require` answers every "may this caller do that to this resource" question; what the caller
may not see raises the resource's NotFound (never 403), what it sees but may not change
raises `NotAllowed` (403). `readable_filter` is the matching MongoDB filter for lists.
Grants may come from an `AccessCache` (see there): it is trusted only to allow, and any
change that removes a right is announced to every process before its request answers.

This module knows resources only through the `Securable` protocol (their type, not-found
error and access path); it imports no resource module.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from bson import ObjectId
from odmantic import AIOEngine

from app.auth.principal import Principal
from app.catalog.permissions.access_cache import MAX_GRANTS, AccessCache, UserGrants
from app.catalog.permissions.exceptions import NotAllowed, UserRequired
from app.catalog.permissions.models import Grant, ResourceKind, ResourceType, Role
from app.core import db

MATCH_NOTHING: dict[str, Any] = {"_id": {"$in": []}}


class Securable(Protocol):
    """What the permission code knows of a resource: its kind, id and access path."""

    kind: ClassVar[ResourceKind]

    @property
    def id(self) -> ObjectId:
        """The resource's `_id`."""

    @property
    def access_path(self) -> list[str]:
        """Ids of the folders whose grants apply to the resource (besides its own grants)."""


def creator_uid(principal: Principal) -> str:
    """Who is recorded as creator: a user's uid or `master`; device keys cannot create."""
    if principal.is_device:
        raise UserRequired()
    return principal.uid


async def cached_grants(
    engine: AIOEngine, *, uid: str, access: AccessCache, fresh: bool = False
) -> UserGrants | None:
    """Every grant the user holds, from `access` or one MongoDB read that refreshes it
    (`fresh` skips the cache); None for a user with more than MAX_GRANTS grants."""
    if not fresh:
        cached = access.grants(uid)
        if cached is not None:
            return cached
    generation = access.generation
    roles: dict[tuple[str, str], Role] = {}
    cursor = db.collection(engine, Grant).find(
        {"user_uid": uid}, {"resource_type": 1, "resource_id": 1, "role": 1}, limit=MAX_GRANTS + 1
    )
    count = 0
    async for doc in cursor:
        count += 1
        role, key = Role(doc["role"]), (str(doc["resource_type"]), str(doc["resource_id"]))
        if key not in roles or role.rank > roles[key].rank:
            roles[key] = role
    if count > MAX_GRANTS:
        return None
    grants = UserGrants(roles)
    access.remember_grants(uid, grants, generation=generation)
    return grants


async def _role_from_grants(engine: AIOEngine, *, uid: str, resource: Securable) -> Role | None:
    """The caller's role from the grants that apply to `resource` (one targeted read)."""
    clauses: list[dict[str, Any]] = [
        {"resource_type": resource.kind.resource_type, "resource_id": str(resource.id)}
    ]
    folders = resource.access_path
    if folders:
        clauses.append({"resource_type": ResourceType.FOLDER, "resource_id": {"$in": folders}})
    query = {"user_uid": uid, "$or": clauses}
    best: Role | None = None
    async for doc in db.collection(engine, Grant).find(query, {"role": 1}):
        role = Role(doc["role"])
        if best is None or role.rank > best.rank:
            best = role
    return best


async def role_of(
    engine: AIOEngine,
    *,
    principal: Principal,
    resource: Securable,
    access: AccessCache | None = None,
    fresh: bool = False,
) -> Role | None:
    """The caller's effective role on `resource`, or None when it may not see it."""
    if principal.is_admin:
        return Role.OWNER
    if principal.is_device:
        # A device key reads its own device and nothing else.
        own = (
            resource.kind.resource_type is ResourceType.DEVICE
            and str(resource.id) == principal.device_id
        )
        return Role.VIEWER if own else None
    if not principal.is_user:
        return None
    grants = None
    if access is not None:
        grants = await cached_grants(engine, uid=principal.uid, access=access, fresh=fresh)
    if grants is None:
        return await _role_from_grants(engine, uid=principal.uid, resource=resource)
    return grants.best(
        resource_type=resource.kind.resource_type,
        resource_id=str(resource.id),
        folders=resource.access_path,
    )


def _reaches(effective: Role | None, role: Role) -> bool:
    return effective is not None and effective.rank >= role.rank


async def require(
    engine: AIOEngine,
    *,
    principal: Principal,
    resource: Securable,
    role: Role,
    access: AccessCache | None = None,
) -> Role:
    """Return the caller's role if it reaches `role`; else raise NotFound or NotAllowed.

    With `access`, cached grants may allow; a refusal is always decided from MongoDB (a
    grant added a moment ago, in any process, counts).
    """
    effective = await role_of(engine, principal=principal, resource=resource, access=access)
    if not _reaches(effective, role) and access is not None and principal.is_user:
        effective = await role_of(
            engine, principal=principal, resource=resource, access=access, fresh=True
        )
    if effective is None:
        raise resource.kind.not_found()
    if effective.rank < role.rank:
        raise NotAllowed(f"this needs the {role.value} role; you have {effective.value}")
    return effective


async def readable_filter(
    engine: AIOEngine, *, principal: Principal, model: type[Securable]
) -> dict[str, Any]:
    """A MongoDB filter matching exactly the resources of this kind the caller may read.

    For users: `{"$or": [{"_id": {"$in": direct}}, {<path field>: {"$in": granted folders}}]}`
    — served by the `_id` index and the multikey `ancestors` / `folder_path` index.
    """
    if principal.is_admin:
        return {}
    if principal.is_device:
        if model.kind.resource_type is ResourceType.DEVICE and principal.device_id:
            return {"_id": ObjectId(principal.device_id)}
        return dict(MATCH_NOTHING)
    if not principal.is_user:
        return dict(MATCH_NOTHING)
    direct: list[ObjectId] = []
    folders: list[str] = []
    cursor = db.collection(engine, Grant).find(
        {"user_uid": principal.uid}, {"resource_type": 1, "resource_id": 1}
    )
    async for doc in cursor:
        if doc["resource_type"] == model.kind.resource_type:
            direct.append(ObjectId(doc["resource_id"]))
        if doc["resource_type"] == ResourceType.FOLDER:
            folders.append(doc["resource_id"])
    clauses: list[dict[str, Any]] = []
    if direct:
        clauses.append(db.in_chunks("_id", direct))
    if folders:
        clauses.append(db.in_chunks(model.kind.path_field, folders))
    if not clauses:
        return dict(MATCH_NOTHING)
    if len(clauses) == 1:
        return clauses[0]
    return {"$or": clauses}


async def granted_folder_ids(engine: AIOEngine, *, uid: str) -> list[str]:
    """Ids of the folders the user holds a direct grant on."""
    cursor = db.collection(engine, Grant).find(
        {"user_uid": uid, "resource_type": ResourceType.FOLDER}, {"resource_id": 1}
    )
    return [doc["resource_id"] async for doc in cursor]
