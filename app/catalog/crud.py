"""What folders, products and devices share: load, authorise, list, create, change, move.

Written once for every resource kind; each kind's service adds only its own rules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypedDict, TypeVar

from bson import ObjectId
from odmantic import AIOEngine
from pymongo.errors import DuplicateKeyError

from app.auth.principal import Principal
from app.catalog.models import Device, Folder, Product
from app.catalog.permissions import service as permissions_service
from app.catalog.permissions import sharing
from app.catalog.permissions.access_cache import AccessCache
from app.catalog.permissions.exceptions import NotAllowed
from app.catalog.permissions.models import ResourceKind, ResourceType, Role
from app.core import db
from app.core.errors import AppError, NotFound
from app.core.models import parse_object_id
from app.core.pagination import PageParams, find_page

R = TypeVar("R", Folder, Product, Device)


async def get(engine: AIOEngine, model: type[R], resource_id: str) -> R:
    """Load a resource by hex id (a malformed id is simply not found)."""
    found = await db.find_by_id(engine, model, resource_id)
    if found is None:
        raise model.kind.not_found()
    return found


async def get_for(
    engine: AIOEngine,
    model: type[R],
    *,
    principal: Principal,
    resource_id: str,
    role: Role,
    access: AccessCache | None = None,
) -> R:
    """Load a resource the caller holds `role` on (404 when invisible, 403 when too weak).

    One MongoDB read (the resource) when the caller's grants are in `access`.
    """
    generation = 0 if access is None else access.generation
    resource = await get(engine, model, resource_id)
    if access is not None and isinstance(resource, Device):  # its path serves `device_access_for`
        access.remember_path(
            ResourceType.DEVICE, str(resource.id), resource.access_path, generation=generation
        )
    await permissions_service.require(
        engine, principal=principal, resource=resource, role=role, access=access
    )
    return resource


@dataclass(frozen=True, slots=True)
class DeviceRef:
    """A device as access checks know it: its id and the folders whose grants reach it."""

    kind: ClassVar[ResourceKind] = Device.kind

    id: ObjectId
    folders: tuple[str, ...]

    @property
    def access_path(self) -> list[str]:
        """The device's folder and that folder's ancestors."""
        return list(self.folders)


async def _device_ref(
    engine: AIOEngine, device_id: str, *, access: AccessCache, fresh: bool
) -> DeviceRef:
    oid = parse_object_id(device_id)
    if oid is None:
        raise Device.kind.not_found()
    cached = None if fresh else access.path(ResourceType.DEVICE, device_id)
    if cached is not None:
        return DeviceRef(oid, cached.folders)
    generation = access.generation
    doc = await db.collection(engine, Device).find_one({"_id": oid}, {"folder_path": 1})
    if doc is None:
        raise Device.kind.not_found()
    folders = tuple(str(f) for f in doc.get("folder_path") or ())
    access.remember_path(ResourceType.DEVICE, device_id, folders, generation=generation)
    return DeviceRef(oid, folders)


async def device_access_for(
    engine: AIOEngine, *, principal: Principal, device_id: str, role: Role, access: AccessCache
) -> DeviceRef:
    """Check the caller holds `role` on a device without loading it (404/403 as `get_for`).

    Served from `access` when warm (no MongoDB read); a refusal is decided from MongoDB.
    """
    ref = await _device_ref(engine, device_id, access=access, fresh=False)
    try:
        await permissions_service.require(
            engine, principal=principal, resource=ref, role=role, access=access
        )
    except (NotAllowed, NotFound):
        ref = await _device_ref(engine, device_id, access=access, fresh=True)
        await permissions_service.require(
            engine, principal=principal, resource=ref, role=role, access=access
        )
    return ref


async def list_readable(
    engine: AIOEngine,
    model: type[R],
    *,
    principal: Principal,
    page: PageParams,
    filters: list[dict[str, Any]],
) -> tuple[list[R], str | None]:
    """One page (by `_id`) of the resources of `model` the caller can see, matching `filters`."""
    readable = await permissions_service.readable_filter(engine, principal=principal, model=model)
    return await find_page(engine, model, page, readable, *filters)


async def insert_owned(
    engine: AIOEngine, resource: R, *, principal: Principal, taken: type[AppError]
) -> R:
    """Store a new resource (`taken` on a unique clash); its creating user becomes owner."""
    try:
        await db.insert(engine, resource)
    except DuplicateKeyError:
        raise taken() from None
    await sharing.grant_owner(engine, resource=resource, principal=principal)
    return resource


async def apply_changes(
    engine: AIOEngine, resource: R, changes: Mapping[str, Any], *, taken: type[AppError]
) -> R:
    """A targeted update (`taken` on a unique clash); the resource as stored now."""
    try:
        await db.update_fields(engine, resource, changes)
    except DuplicateKeyError:
        raise taken() from None
    return await get(engine, type(resource), str(resource.id))


class NameFields(TypedDict):
    """A name and its case-folded key (unique and prefix searches use the key)."""

    name: str
    name_key: str


class Placement(TypedDict):
    """Where a product or device is: its folder and that folder's path."""

    folder_id: str | None
    folder_path: list[str]


def name_fields(name: str) -> NameFields:
    """The stored fields of a name."""
    return {"name": name, "name_key": name.casefold()}


def renamed(name: str | None) -> dict[str, Any]:
    """The changes a PATCH's `name` makes: its stored fields, or none when it gives no name."""
    return dict(name_fields(name)) if name is not None else {}


async def placement(engine: AIOEngine, *, principal: Principal, folder_id: str | None) -> Placement:
    """Where a new product or device goes: `folder_id` (editor needed there) and its path."""
    path = await destination_path(engine, principal=principal, folder_id=folder_id)
    return {"folder_id": folder_id, "folder_path": path}


async def require_visible_folder(
    engine: AIOEngine, *, principal: Principal, folder_id: str | None
) -> None:
    """A filter by folder names one the caller can see (404 otherwise); its subtree is then
    all visible to the caller. No folder named, nothing to check."""
    if folder_id is not None:
        await get_for(engine, Folder, principal=principal, resource_id=folder_id, role=Role.VIEWER)


async def destination_path(
    engine: AIOEngine, *, principal: Principal, folder_id: str | None
) -> list[str]:
    """The path of a destination folder the caller may edit ([] for the top level)."""
    if folder_id is None:
        return []
    folder = await get_for(
        engine, Folder, principal=principal, resource_id=folder_id, role=Role.EDITOR
    )
    return folder.path


async def move_fields(
    engine: AIOEngine, *, principal: Principal, resource: Product | Device, folder_id: str | None
) -> Placement:
    """The fields that move a product or device into `folder_id`.

    Moving changes who inherits access, so it takes owner on the resource (like sharing) and
    editor on the destination.
    """
    await permissions_service.require(
        engine, principal=principal, resource=resource, role=Role.OWNER
    )
    return await placement(engine, principal=principal, folder_id=folder_id)


def equal_to(**fields: str | None) -> list[dict[str, Any]]:
    """Equality filters for the fields that are given (not None)."""
    return [{name: value} for name, value in fields.items() if value is not None]


def prefix_regex(text: str, *, fold: bool = True) -> dict[str, Any]:
    """An anchored, escaped prefix match (index-friendly; case-folded for `*_key` fields).

    MongoDB refuses a NUL byte inside a pattern, so one is written as the escape `\\x00`.
    """
    escaped = re.escape(text.casefold() if fold else text).replace("\x00", "\\x00")
    return {"$regex": "^" + escaped}
