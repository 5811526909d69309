"""Products: device types with a telemetry schema; SKUs are unique per owner."""

from __future__ import annotations

import re
from typing import Any

from odmantic import AIOEngine
from pymongo.errors import DuplicateKeyError

from app.auth.principal import Principal
from app.core import db
from app.core.pagination import PageParams, and_filters, next_cursor
from app.devices.models import Device
from app.folders import service as folders_service
from app.permissions import service as permissions_service
from app.permissions import sharing
from app.permissions.models import ResourceType, Role
from app.products.exceptions import ProductInUse, ProductNotFound, SkuTaken
from app.products.models import Product
from app.products.schemas import ProductCreate, ProductUpdate


async def get(engine: AIOEngine, *, product_id: str) -> Product:
    """Load a product by hex id (malformed ids are simply not found)."""
    product = await db.find_by_id(engine, Product, product_id)
    if product is None:
        raise ProductNotFound()
    return product


async def get_for(
    engine: AIOEngine, *, principal: Principal, product_id: str, role: Role
) -> Product:
    """Load a product the caller holds `role` on (404 when invisible, 403 when too weak)."""
    product = await get(engine, product_id=product_id)
    await permissions_service.require(engine, principal, product, role)
    return product


async def create(engine: AIOEngine, *, principal: Principal, product_in: ProductCreate) -> Product:
    """Create a product (editor on its folder needed); the creator becomes its owner."""
    uid = permissions_service.creator_uid(principal)
    product = Product(
        name=product_in.name,
        name_key=product_in.name.casefold(),
        sku=product_in.sku,
        sku_key=product_in.sku.casefold(),
        description=product_in.description,
        tags=product_in.tags,
        folder_id=product_in.folder_id,
        folder_path=await folders_service.destination_path(
            engine, principal=principal, folder_id=product_in.folder_id
        ),
        telemetry=product_in.telemetry.model_dump(mode="json"),
        owner_uid=uid,
        created_by=uid,
    )
    try:
        await db.insert(engine, product)
    except DuplicateKeyError:
        raise SkuTaken() from None
    await sharing.grant_owner(engine, resource=product, principal=principal)
    return product


def prefix_regex(text: str) -> dict[str, Any]:
    """An anchored, escaped, case-folded prefix match (index-friendly on `*_key` fields)."""
    return {"$regex": "^" + re.escape(text.casefold())}


async def list_(
    engine: AIOEngine,
    *,
    principal: Principal,
    page: PageParams,
    folder_id: str | None = None,
    tag: str | None = None,
    q: str | None = None,
) -> tuple[list[Product], str | None]:
    """Products the caller can see, filtered by folder, tag and name/SKU prefix."""
    readable = await permissions_service.readable_filter(engine, principal, ResourceType.PRODUCT)
    filters: list[dict[str, Any]] = [readable]
    if folder_id is not None:
        filters.append({"folder_id": folder_id})
    if tag is not None:
        filters.append({"tags": {"$in": [tag]}})  # `$in`: see compat note on arrays
    if q:
        filters.append({"$or": [{"name_key": prefix_regex(q)}, {"sku_key": prefix_regex(q)}]})
    query = and_filters(*filters, page.filter())
    rows = await db.find_many(engine, Product, query, sort=[("_id", 1)], limit=page.limit + 1)
    return next_cursor(rows, page.limit)


async def update(
    engine: AIOEngine, *, principal: Principal, product: Product, product_in: ProductUpdate
) -> Product:
    """Change fields (editor); moving to another folder needs owner here and editor there."""
    changes: dict[str, Any] = {}
    fields = product_in.model_fields_set
    if product_in.name is not None:
        changes.update(name=product_in.name, name_key=product_in.name.casefold())
    if product_in.sku is not None:
        changes.update(sku=product_in.sku, sku_key=product_in.sku.casefold())
    if "description" in fields:
        changes["description"] = product_in.description
    if product_in.tags is not None:
        changes["tags"] = product_in.tags
    if product_in.telemetry is not None:
        changes["telemetry"] = product_in.telemetry.model_dump(mode="json")
    if "folder_id" in fields and product_in.folder_id != product.folder_id:
        changes.update(
            await folders_service.move_fields(
                engine, principal=principal, resource=product, folder_id=product_in.folder_id
            )
        )
    try:
        await db.update_fields(engine, product, changes)
    except DuplicateKeyError:
        raise SkuTaken() from None
    return await get(engine, product_id=str(product.id))


async def delete(engine: AIOEngine, *, product: Product) -> None:
    """Delete a product no device uses (owner checked by the caller)."""
    pid = str(product.id)
    if await db.collection(engine, Device).find_one({"product_id": pid}, {"_id": 1}):
        raise ProductInUse("delete or move its devices to another product first")
    await db.delete(engine, product)
    await sharing.delete_for(engine, resource_type=ResourceType.PRODUCT, ids=[pid])
