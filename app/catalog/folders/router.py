"""Folders: `POST|GET /folders`, `GET|PATCH|DELETE /folders/{folder_id}`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from app.auth.dependencies import CurrentPrincipal, UserPrincipal
from app.auth.exceptions import KeyRevocationPending
from app.catalog.dependencies import FolderForEdit, FolderForOwner, FolderForView
from app.catalog.exceptions import (
    FolderCycle,
    FolderNameTaken,
    FolderNotEmpty,
    FolderNotFound,
    FolderTooDeep,
    ProductInUse,
)
from app.catalog.folders import service as folders_service
from app.catalog.folders.schemas import FolderCreate, FolderRead, FolderUpdate
from app.catalog.permissions.exceptions import NotAllowed
from app.core.feed_cache import InvalidationPending
from app.core.models import IdStr
from app.core.openapi import raises
from app.core.pagination import Page, PageParamsDep
from app.core.responses import NO_CONTENT
from app.core.routing import API_PREFIX
from app.core.services import ServicesDep

router = APIRouter(prefix=f"{API_PREFIX}/folders", tags=["folders"])


@router.post("", response_model=FolderRead, status_code=status.HTTP_201_CREATED)
@raises(FolderNotFound, NotAllowed, FolderNameTaken, FolderTooDeep)
async def create_folder(
    body: FolderCreate, services: ServicesDep, principal: UserPrincipal
) -> FolderRead:
    """Create a folder at the top level or inside one you can edit; you become its owner."""
    folder = await folders_service.create(services, principal=principal, folder_in=body)
    return FolderRead.of(folder)


@router.get("", response_model=Page[FolderRead])
@raises(FolderNotFound)
async def list_folders(
    services: ServicesDep,
    principal: CurrentPrincipal,
    page: PageParamsDep,
    parent_id: Annotated[IdStr | None, Query(description="list this folder's children")] = None,
) -> Page[FolderRead]:
    """Children of `parent_id`, or your top level: the highest folders you can see."""
    items, cursor = await folders_service.list_(
        services.engine, principal=principal, parent_id=parent_id, page=page
    )
    return Page[FolderRead].of(items, cursor, FolderRead.of)


@router.get("/{folder_id}", response_model=FolderRead)
async def get_folder(folder: FolderForView) -> FolderRead:
    """One folder you can see."""
    return FolderRead.of(folder)


@router.patch("/{folder_id}", response_model=FolderRead)
@raises(
    FolderNotFound, NotAllowed, FolderNameTaken, FolderCycle, FolderTooDeep, InvalidationPending
)
async def update_folder(
    folder: FolderForEdit, body: FolderUpdate, services: ServicesDep, principal: CurrentPrincipal
) -> FolderRead:
    """Rename (editor) or move (owner, and editor on the new parent); no cycles."""
    updated = await folders_service.update(
        services, principal=principal, folder=folder, folder_in=body
    )
    return FolderRead.of(updated)


@router.delete("/{folder_id}", **NO_CONTENT)
@raises(FolderNotEmpty, ProductInUse, KeyRevocationPending, InvalidationPending)
async def delete_folder(
    folder: FolderForOwner,
    services: ServicesDep,
    recursive: Annotated[bool, Query(description="also delete everything below")] = False,
) -> None:
    """Delete an empty folder (409 otherwise), or everything below it with `recursive=true`."""
    await folders_service.delete(services, folder=folder, recursive=recursive)
