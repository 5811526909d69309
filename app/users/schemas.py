"""API schemas of the users domain."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, StrictBool, model_validator
from pydantic.json_schema import SkipJsonSchema


class UserRead(BaseModel):
    """A user as admins see it."""

    model_config = ConfigDict(from_attributes=True)

    uid: str
    email: str | None
    email_verified: bool
    display_name: str | None
    roles: list[str]
    disabled: bool
    created_at: datetime
    last_seen_at: datetime


class UserUpdate(BaseModel):
    """What an admin may change about a user."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    # Left out means "unchanged"; null is not a value (the schema says so, and so does this).
    disabled: StrictBool | SkipJsonSchema[None] = None
    admin: StrictBool | SkipJsonSchema[None] = None

    @model_validator(mode="after")
    def _something_to_change(self) -> UserUpdate:
        """An empty update is a client mistake, not a no-op; null is no value."""
        if self.disabled is None and self.admin is None:
            raise ValueError("give at least one of `disabled`, `admin`")
        for name in self.model_fields_set:
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self
