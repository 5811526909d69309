"""API schemas of the products domain."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.catalog.command_specs import CommandSpecRead, CommandSpecs
from app.catalog.schemas import TRIMMED_LINE, Name, PatchBody, StoredView
from app.catalog.telemetry import TelemetrySchema
from app.core.models import IdStr

Sku = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")]
Tag = Annotated[str, StringConstraints(pattern=TRIMMED_LINE, min_length=1, max_length=32)]
Description = Annotated[str, StringConstraints(max_length=2000)]


class ProductCreate(BaseModel):
    """A new product in a folder (or at the top level when `folder_id` is omitted)."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    sku: Sku
    description: Description | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=20)
    folder_id: IdStr | None = None
    telemetry: TelemetrySchema = Field(default_factory=TelemetrySchema)
    commands: CommandSpecs = Field(default_factory=list)


class ProductUpdate(PatchBody):
    """Fields to change; `folder_id: null` moves the product out of its folder."""

    not_nullable = ("name", "sku", "tags", "telemetry", "commands")

    name: Name | None = None
    sku: Sku | None = None
    description: Description | None = None
    tags: list[Tag] | None = Field(default=None, max_length=20)
    folder_id: IdStr | None = None
    telemetry: TelemetrySchema | None = None
    commands: CommandSpecs | None = None


class ProductFilters(BaseModel):
    """`GET /products` filters, all optional and combined."""

    folder_id: IdStr | None = Field(default=None, description="only products in this folder")
    tag: str | None = Field(default=None, min_length=1, max_length=32)
    q: str | None = Field(
        default=None, min_length=1, max_length=100, description="name or SKU prefix"
    )


class ProductRead(StoredView):
    """A product as the API shows it."""

    id: IdStr
    name: str
    sku: str
    description: str | None
    tags: list[str]
    folder_id: IdStr | None
    telemetry: TelemetrySchema
    commands: list[CommandSpecRead]
    owner_uid: str
    created_by: str
    created_at: datetime
    updated_at: datetime
