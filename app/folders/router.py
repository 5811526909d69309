"""Folders: `POST|GET /folders`, `GET|PATCH|DELETE /folders/{folder_id}`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app.auth.dependencies import CurrentPrincipal, DeviceKeysDep, UserPrincipal
from app.core.deps import EngineDep
from app.core.models import IdStr
from app.core.pagination import Page, PageParamsDep
from app.folders import service as folders_service
from app.folders.dependencies import FolderForEdit, FolderForOwner, FolderForView
from app.folders.models import Folder
from app.folders.schemas import FolderCreate, FolderRead, FolderUpdate

router = APIRouter(prefix="/folders", tags=["folders"])


def folder_read(folder: Folder) -> FolderRead:
    """The API view of a stored folder."""
    return FolderRead.model_validate(folder.model_dump())


@router.post("", response_model=FolderRead, status_code=status.HTTP_201_CREATED)
async def create_folder(
    body: FolderCreate, engine: EngineDep, principal: UserPrincipal
) -> FolderRead:
    """Create a folder at the top level or inside one you can edit; you become its owner."""
    return folder_read(await folders_service.create(engine, principal=principal, folder_in=body))


@router.get("", response_model=Page[FolderRead])
async def list_folders(
    engine: EngineDep,
    principal: CurrentPrincipal,
    page: PageParamsDep,
    parent_id: Annotated[IdStr | None, Query(description="list this folder's children")] = None,
) -> Page[FolderRead]:
    """Children of `parent_id`, or your top level: the highest folders you can see."""
    items, cursor = await folders_service.list_(
        engine, principal=principal, parent_id=parent_id, page=page
    )
    return Page[FolderRead](items=[folder_read(f) for f in items], next_cursor=cursor)


@router.get("/{folder_id}", response_model=FolderRead)
async def get_folder(folder: FolderForView) -> FolderRead:
    """One folder you can see."""
    return folder_read(folder)


@router.patch("/{folder_id}", response_model=FolderRead)
async def update_folder(
    folder: FolderForEdit, body: FolderUpdate, engine: EngineDep, principal: CurrentPrincipal
) -> FolderRead:
    """Rename (editor) or move (owner, and editor on the new parent); no cycles."""
    updated = await folders_service.update(
        engine, principal=principal, folder=folder, folder_in=body
    )
    return folder_read(updated)


@router.delete(
    "/{folder_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    response_model=None,
)
async def delete_folder(
    folder: FolderForOwner,
    engine: EngineDep,
    key_cache: DeviceKeysDep,
    recursive: Annotated[bool, Query(description="also delete everything below")] = False,
) -> Response:
    """Delete an empty folder (409 otherwise), or everything below it with `recursive=true`."""
    await folders_service.delete(engine, folder=folder, recursive=recursive, key_cache=key_cache)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
