"""API field types and rules shared by the catalog's request schemas."""

from __future__ import annotations

from typing import Annotated, ClassVar, Self

from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class PatchBody(BaseModel):
    """A PATCH body: fields left out stay as they are; `null` clears optional fields only."""

    model_config = ConfigDict(extra="forbid")

    # Fields that may be left out but not set to null.
    not_nullable: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _required_not_null(self) -> Self:
        for name in self.not_nullable:
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self
