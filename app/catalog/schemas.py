"""API field types and rules shared by the catalog's request schemas."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from pydantic import BaseModel, StringConstraints

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


def refuse_nulls(update: BaseModel, fields: Iterable[str]) -> None:
    """In a PATCH body, `null` clears optional fields only: refuse it for these."""
    for name in fields:
        if name in update.model_fields_set and getattr(update, name) is None:
            raise ValueError(f"{name} cannot be null")
