"""API schemas of the folders domain."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from app.catalog.schemas import Name, PatchBody, StoredView
from app.core.models import IdStr


class FolderCreate(BaseModel):
    """A new folder, at the top level or inside `parent_id`."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    parent_id: IdStr | None = None


class FolderUpdate(PatchBody):
    """Rename and/or move; `parent_id: null` moves to the top level, omitted leaves it."""

    not_nullable = ("name",)

    name: Name | None = None
    parent_id: IdStr | None = None


class FolderRead(StoredView):
    """A folder as the API shows it; `ancestors` are the ids from the root down."""

    id: IdStr
    name: str
    parent_id: IdStr | None
    ancestors: list[IdStr]
    created_by: str
    created_at: datetime
    updated_at: datetime
