"""Load a folder and check the caller's role on it, as `Annotated` dependencies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends

from app.auth.dependencies import CurrentPrincipal
from app.core.deps import EngineDep
from app.folders import service as folders_service
from app.folders.models import Folder
from app.permissions.models import Role


def folder_for(role: Role) -> Callable[..., Awaitable[Folder]]:
    """A dependency loading `{folder_id}` if the caller holds `role` (404 if invisible)."""

    async def load(folder_id: str, engine: EngineDep, principal: CurrentPrincipal) -> Folder:
        return await folders_service.get_for(
            engine, principal=principal, folder_id=folder_id, role=role
        )

    return load


FolderForView = Annotated[Folder, Depends(folder_for(Role.VIEWER))]
FolderForEdit = Annotated[Folder, Depends(folder_for(Role.EDITOR))]
FolderForOwner = Annotated[Folder, Depends(folder_for(Role.OWNER))]
