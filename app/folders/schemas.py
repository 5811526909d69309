"""API schemas of the folders domain."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator

from app.core.models import IdStr

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class FolderCreate(BaseModel):
    """A new folder, at the top level or inside `parent_id`."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    parent_id: IdStr | None = None


class FolderUpdate(BaseModel):
    """Rename and/or move; `parent_id: null` moves to the top level, omitted leaves it."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    parent_id: IdStr | None = None

    @model_validator(mode="after")
    def _name_not_null(self) -> FolderUpdate:
        if "name" in self.model_fields_set and self.name is None:
            raise ValueError("name cannot be null")
        return self


class FolderRead(BaseModel):
    """A folder as the API shows it; `ancestors` are the ids from the root down."""

    id: IdStr
    name: str
    parent_id: IdStr | None
    ancestors: list[IdStr]
    created_by: str
    created_at: datetime
    updated_at: datetime
