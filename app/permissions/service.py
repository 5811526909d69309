"""The one place that decides access: roles from grants, inherited down the folder tree.

`require` answers every "may this caller do that to this resource" question; what the caller
may not see raises the resource's NotFound (never 403), what it sees but may not change
raises `NotAllowed` (403). `readable_filter` is the matching MongoDB filter for lists.
Nothing is cached: removing a grant takes effect on the next request.
"""

from __future__ import annotations

from typing import Any

from bson import ObjectId
from odmantic import AIOEngine

from app.auth.principal import Principal
from app.core import db
from app.core.errors import NotFound
from app.devices.exceptions import DeviceNotFound
from app.devices.models import Device
from app.folders.exceptions import FolderNotFound
from app.folders.models import Folder
from app.permissions.exceptions import NotAllowed, UserRequired
from app.permissions.models import Grant, ResourceType, Role
from app.products.exceptions import ProductNotFound
from app.products.models import Product

Resource = Folder | Product | Device

NOT_FOUND: dict[ResourceType, type[NotFound]] = {
    ResourceType.FOLDER: FolderNotFound,
    ResourceType.PRODUCT: ProductNotFound,
    ResourceType.DEVICE: DeviceNotFound,
}

MATCH_NOTHING: dict[str, Any] = {"_id": {"$in": []}}


def resource_type_of(resource: Resource) -> ResourceType:
    """The grant type of a loaded resource."""
    if isinstance(resource, Folder):
        return ResourceType.FOLDER
    if isinstance(resource, Product):
        return ResourceType.PRODUCT
    return ResourceType.DEVICE


def inherited_from(resource: Resource) -> list[str]:
    """Ids of the folders whose grants apply to `resource` (besides its own grants)."""
    if isinstance(resource, Folder):
        return list(resource.ancestors)
    return list(resource.folder_path)


def creator_uid(principal: Principal) -> str:
    """Who is recorded as creator: a user's uid or `master`; device keys cannot create."""
    if principal.is_device:
        raise UserRequired()
    return principal.uid


async def role_of(engine: AIOEngine, principal: Principal, resource: Resource) -> Role | None:
    """The caller's effective role on `resource`, or None when it may not see it."""
    if principal.is_admin:
        return Role.OWNER
    if principal.is_device:
        # A device key reads its own device and nothing else.
        own = isinstance(resource, Device) and str(resource.id) == principal.device_id
        return Role.VIEWER if own else None
    if not principal.is_user:
        return None
    rtype = resource_type_of(resource)
    clauses: list[dict[str, Any]] = [{"resource_type": rtype, "resource_id": str(resource.id)}]
    folders = inherited_from(resource)
    if folders:
        clauses.append({"resource_type": ResourceType.FOLDER, "resource_id": {"$in": folders}})
    query = {"user_uid": principal.uid, "$or": clauses}
    best: Role | None = None
    async for doc in db.collection(engine, Grant).find(query, {"role": 1}):
        role = Role(doc["role"])
        if best is None or role.rank > best.rank:
            best = role
    return best


async def require(engine: AIOEngine, principal: Principal, resource: Resource, role: Role) -> Role:
    """Return the caller's role if it reaches `role`; else raise NotFound or NotAllowed."""
    effective = await role_of(engine, principal, resource)
    if effective is None:
        raise NOT_FOUND[resource_type_of(resource)]()
    if effective.rank < role.rank:
        raise NotAllowed(f"this needs the {role.value} role; you have {effective.value}")
    return effective


async def readable_filter(
    engine: AIOEngine, principal: Principal, resource_type: ResourceType
) -> dict[str, Any]:
    """A MongoDB filter matching exactly the resources of this type the caller may read.

    For users: `{"$or": [{"_id": {"$in": direct}}, {<path field>: {"$in": granted folders}}]}`
    — served by the `_id` index and the multikey `ancestors` / `folder_path` index.
    """
    if principal.is_admin:
        return {}
    if principal.is_device:
        if resource_type is ResourceType.DEVICE and principal.device_id:
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
        if doc["resource_type"] == resource_type:
            direct.append(ObjectId(doc["resource_id"]))
        if doc["resource_type"] == ResourceType.FOLDER:
            folders.append(doc["resource_id"])
    path_field = "ancestors" if resource_type is ResourceType.FOLDER else "folder_path"
    clauses: list[dict[str, Any]] = []
    if direct:
        clauses.append({"_id": {"$in": direct}})
    if folders:
        clauses.append({path_field: {"$in": folders}})
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
