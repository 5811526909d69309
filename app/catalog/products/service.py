"""Products: device types with a telemetry schema; SKUs are unique per owner."""

from __future__ import annotations

from typing import TYPE_CHECKING

from odmantic import AIOEngine

from app.auth.principal import Principal
from app.catalog import crud
from app.catalog.exceptions import IngestLimitTooHigh, ProductInUse, SkuTaken
from app.catalog.models import Device, Product
from app.catalog.permissions import service as permissions_service
from app.catalog.permissions import sharing
from app.catalog.permissions.models import ResourceType
from app.catalog.products.schemas import ProductCreate, ProductFilters, ProductUpdate
from app.catalog.telemetry import TelemetrySchema
from app.core import db
from app.core.pagination import PageParams

if TYPE_CHECKING:
    from app.core.services import Services


def check_ingest_limit(telemetry: TelemetrySchema, *, max_per_minute: int) -> None:
    """A product may lower its devices' ingest limit, or raise it up to the operator's cap."""
    limit = telemetry.ingest_limit_per_minute
    if limit is not None and limit > max_per_minute:
        raise IngestLimitTooHigh(
            f"ingest_limit_per_minute may be at most {max_per_minute} (RATE_LIMIT_DEVICE_MAX)"
        )


async def create(services: Services, *, principal: Principal, product_in: ProductCreate) -> Product:
    """Create a product (editor on its folder needed); the creator becomes its owner."""
    engine, max_ingest_limit = services.engine, services.settings.rate_limit_device_max
    uid = permissions_service.creator_uid(principal)
    check_ingest_limit(product_in.telemetry, max_per_minute=max_ingest_limit)
    product = Product(
        **crud.name_fields(product_in.name),
        sku=product_in.sku,
        sku_key=product_in.sku.casefold(),
        description=product_in.description,
        tags=product_in.tags,
        **await crud.placement(engine, principal=principal, folder_id=product_in.folder_id),
        telemetry=product_in.telemetry.model_dump(mode="json"),
        commands=[c.stored() for c in product_in.commands],
        owner_uid=uid,
        created_by=uid,
    )
    return await crud.insert_owned(engine, product, principal=principal, taken=SkuTaken)


async def list_(
    engine: AIOEngine, *, principal: Principal, page: PageParams, filters_in: ProductFilters
) -> tuple[list[Product], str | None]:
    """Products the caller can see, filtered by folder, tag and name/SKU prefix."""
    filters = crud.equal_to(folder_id=filters_in.folder_id)
    if filters_in.tag is not None:
        filters.append({"tags": {"$in": [filters_in.tag]}})  # `$in`: see compat note on arrays
    if filters_in.q:
        prefix = crud.prefix_regex(filters_in.q)
        filters.append({"$or": [{"name_key": prefix}, {"sku_key": prefix}]})
    return await crud.list_readable(
        engine, Product, principal=principal, page=page, filters=filters
    )


async def update(
    services: Services, *, principal: Principal, product: Product, product_in: ProductUpdate
) -> Product:
    """Change fields (editor); moving to another folder needs owner here and editor there."""
    engine, max_ingest_limit = services.engine, services.settings.rate_limit_device_max
    changes = crud.renamed(product_in.name)
    fields = product_in.model_fields_set
    if product_in.sku is not None:
        changes.update(sku=product_in.sku, sku_key=product_in.sku.casefold())
    if "description" in fields:
        changes["description"] = product_in.description
    if product_in.tags is not None:
        changes["tags"] = product_in.tags
    if product_in.telemetry is not None:
        check_ingest_limit(product_in.telemetry, max_per_minute=max_ingest_limit)
        changes["telemetry"] = product_in.telemetry.model_dump(mode="json")
    if product_in.commands is not None:
        changes["commands"] = [c.stored() for c in product_in.commands]
    if "folder_id" in fields and product_in.folder_id != product.folder_id:
        changes.update(
            await crud.move_fields(
                engine, principal=principal, resource=product, folder_id=product_in.folder_id
            )
        )
    updated = await crud.apply_changes(engine, product, changes, taken=SkuTaken)
    if "telemetry" in changes:  # every process checks the next reading by the new schema
        await services.device_contexts.products_changed([str(product.id)])
    return updated


async def delete(services: Services, *, product: Product) -> None:
    """Delete a product no device uses (owner checked by the caller)."""
    engine, pid = services.engine, str(product.id)
    if await db.collection(engine, Device).find_one({"product_id": pid}, {"_id": 1}):
        raise ProductInUse("delete or move its devices to another product first")
    await db.delete(engine, product)
    await sharing.delete_for(engine, resource_type=ResourceType.PRODUCT, ids=[pid])
    await services.device_contexts.products_changed([pid])
