"""Folders: a tree with materialised `ancestors`; moves rewrite the paths below them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bson import ObjectId
from odmantic import AIOEngine

from app.auth.principal import Principal
from app.catalog import crud
from app.catalog.exceptions import FolderNameTaken, FolderNotEmpty, ProductInUse
from app.catalog.folders import moves
from app.catalog.folders.schemas import FolderCreate, FolderUpdate
from app.catalog.models import Device, Folder, Product
from app.catalog.permissions import service as permissions_service
from app.catalog.permissions import sharing
from app.catalog.permissions.models import ResourceType, Role
from app.core import db
from app.core.pagination import PageParams, find_page

if TYPE_CHECKING:
    from app.core.services import Services


def _scope(parent: Folder | None, uid: str) -> str:
    return str(parent.id) if parent else f"user:{uid}"


async def create(services: Services, *, principal: Principal, folder_in: FolderCreate) -> Folder:
    """Create a folder (editor on the parent needed, no deeper than FOLDER_MAX_DEPTH); the
    creator becomes its owner."""
    engine, max_depth = services.engine, services.settings.folder_max_depth
    uid = permissions_service.creator_uid(principal)
    parent = None
    if folder_in.parent_id is not None:
        parent = await crud.get_for(
            engine, Folder, principal=principal, resource_id=folder_in.parent_id, role=Role.EDITOR
        )
    moves.check_depth(ancestors=parent.path if parent else [], height=0, max_depth=max_depth)
    folder = Folder(
        **crud.name_fields(folder_in.name),
        parent_id=folder_in.parent_id,
        ancestors=parent.path if parent else [],
        scope=_scope(parent, uid),
        created_by=uid,
    )
    return await crud.insert_owned(engine, folder, principal=principal, taken=FolderNameTaken)


async def _top_level_filter(engine: AIOEngine, principal: Principal) -> dict[str, Any]:
    """The caller's top level: the highest folders it can see (roots for admins)."""
    if principal.is_admin:
        # `$in: [None]`, not `None`: the embedded server drops a plain null match that is
        # ANDed with another condition (see the compat test).
        return {"parent_id": {"$in": [None]}}
    if not principal.is_user:
        return dict(permissions_service.MATCH_NOTHING)
    granted = await permissions_service.granted_folder_ids(engine, uid=principal.uid)
    if not granted:
        return dict(permissions_service.MATCH_NOTHING)
    granted_set = set(granted)
    cursor = db.collection(engine, Folder).find(
        {"_id": {"$in": [ObjectId(g) for g in granted]}}, {"ancestors": 1}
    )
    tops = [doc["_id"] async for doc in cursor if not granted_set.intersection(doc["ancestors"])]
    return {"_id": {"$in": tops}}


async def list_(
    engine: AIOEngine, *, principal: Principal, parent_id: str | None, page: PageParams
) -> tuple[list[Folder], str | None]:
    """Children of `parent_id` the caller can see, or the caller's top-level folders."""
    if parent_id is not None:
        return await crud.list_readable(
            engine, Folder, principal=principal, page=page, filters=[{"parent_id": parent_id}]
        )
    return await find_page(engine, Folder, page, await _top_level_filter(engine, principal))


async def update(
    services: Services, *, principal: Principal, folder: Folder, folder_in: FolderUpdate
) -> Folder:
    """Rename (editor) and/or move (owner here, editor on the destination; no cycles, no
    deeper than FOLDER_MAX_DEPTH)."""
    engine = services.engine
    changes: dict[str, Any] = {}
    if folder_in.name is not None and folder_in.name != folder.name:
        changes.update(crud.name_fields(folder_in.name))
    moving = "parent_id" in folder_in.model_fields_set and folder_in.parent_id != folder.parent_id
    if not moving:
        if not changes:
            return folder
        return await crud.apply_changes(engine, folder, changes, taken=FolderNameTaken)
    # Moving changes who inherits access, so it takes the owner role, like sharing.
    await permissions_service.require(engine, principal=principal, resource=folder, role=Role.OWNER)
    if folder_in.parent_id is not None:
        await crud.get_for(
            engine, Folder, principal=principal, resource_id=folder_in.parent_id, role=Role.EDITOR
        )
    try:
        await moves.move(
            engine,
            folder=folder,
            parent_id=folder_in.parent_id,
            changes=changes,
            scope_of=lambda parent: _scope(parent, folder.created_by),
            max_depth=services.settings.folder_max_depth,
        )
    finally:
        # Every path through the folder may have changed, even by a move that failed half
        # way where there are no transactions.
        await services.access.resources_changed([str(folder.id)])
    await services.on_devices_changed(folder_ids=[str(folder.id)])  # the devices below moved
    return await crud.get(engine, Folder, str(folder.id))


async def delete(services: Services, *, folder: Folder, recursive: bool) -> None:
    """Delete an empty folder, or with `recursive` everything below it (owner checked by caller).

    The keys of deleted devices are revoked through the process's key cache."""
    engine, access = services.engine, services.access
    fid = str(folder.id)
    folders = db.collection(engine, Folder)
    products = db.collection(engine, Product)
    devices = db.collection(engine, Device)
    if not recursive:
        for coll, query in (
            (folders, {"parent_id": fid}),
            (products, {"folder_id": fid}),
            (devices, {"folder_id": fid}),
        ):
            if await coll.find_one(query, {"_id": 1}) is not None:
                raise FolderNotEmpty("delete what it holds first, or use ?recursive=true")
        await db.delete(engine, folder)
        await access.resources_changed([fid])
        await sharing.delete_for(engine, resource_type=ResourceType.FOLDER, ids=[fid])
        await services.on_devices_changed(folder_ids=[fid])
        return
    folder_ids = [folder.id] + [
        d["_id"] async for d in folders.find({"ancestors": {"$in": [fid]}}, {"_id": 1})
    ]
    product_ids = [
        d["_id"] async for d in products.find({"folder_path": {"$in": [fid]}}, {"_id": 1})
    ]
    device_ids = [d["_id"] async for d in devices.find({"folder_path": {"$in": [fid]}}, {"_id": 1})]
    inside = set(device_ids)
    for part in db.chunks([str(p) for p in product_ids]):
        users = devices.find({"product_id": {"$in": part}}, {"_id": 1})
        if any([d["_id"] not in inside async for d in users]):
            raise ProductInUse("devices outside this folder use a product inside it")
    # The subtree goes by its path, one command per collection whatever its size.
    below = {"$in": [fid]}  # `$in`: equality on an array element is not portable
    try:
        await devices.delete_many({"folder_path": below})
        await products.delete_many({"folder_path": below})
        await folders.delete_many({"$or": [{"_id": folder.id}, {"ancestors": below}]})
    finally:  # cached paths of everything below carry the folder's tag
        await access.resources_changed([fid])
    for ids, rtype in (
        (device_ids, ResourceType.DEVICE),
        (product_ids, ResourceType.PRODUCT),
        (folder_ids, ResourceType.FOLDER),
    ):
        await sharing.delete_for(engine, resource_type=rtype, ids=[str(i) for i in ids])
    await services.device_keys.revoke(str(i) for i in device_ids)
    await services.on_devices_changed(folder_ids=[fid])
