"""API schemas of the permissions domain."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from app.catalog.permissions.models import Role


class ShareIn(BaseModel):
    """The role to give; `PUT .../permissions/{user_id}` where `user_id` is a uid or email."""

    model_config = ConfigDict(extra="forbid")

    role: Role


class ShareRead(BaseModel):
    """A grant (`active`, to a user id) or a pending invite (`pending`, to an email)."""

    user_id: str | None
    email: str | None
    role: Role
    status: Literal["active", "pending"]
    created_at: datetime
