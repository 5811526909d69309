"""Products: `POST|GET /products`, `GET|PATCH|DELETE /products/{product_id}`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status

from app.auth.dependencies import CurrentPrincipal, UserPrincipal
from app.catalog.dependencies import (
    ProductCreationQuota,
    ProductForEdit,
    ProductForOwner,
    ProductForView,
    visible,
)
from app.catalog.exceptions import FolderNotFound, IngestLimitTooHigh, ProductInUse, SkuTaken
from app.catalog.permissions.exceptions import NotAllowed
from app.catalog.products import service as products_service
from app.catalog.products.schemas import (
    ProductCreate,
    ProductFilters,
    ProductRead,
    ProductUpdate,
)
from app.core.feed_cache import InvalidationPending
from app.core.openapi import raises
from app.core.pagination import Listing, Page
from app.core.responses import NO_CONTENT
from app.core.routing import API_PREFIX
from app.core.services import ServicesDep

router = APIRouter(prefix=f"{API_PREFIX}/products", tags=["products"])

ProductListing = Annotated[Listing[ProductFilters], Depends(visible(ProductFilters))]


@router.post("", response_model=ProductRead, status_code=status.HTTP_201_CREATED)
@raises(FolderNotFound, NotAllowed, SkuTaken, IngestLimitTooHigh)
async def create_product(
    body: ProductCreate,
    services: ServicesDep,
    principal: UserPrincipal,
    quota: ProductCreationQuota,
) -> ProductRead:
    """Create a product (in a folder you can edit); non-admins have a creation quota."""
    await quota.spend(principal)
    product = await products_service.create(services, principal=principal, product_in=body)
    return ProductRead.of(product)


@router.get("", response_model=Page[ProductRead])
async def list_products(listing: ProductListing) -> Page[ProductRead]:
    """Products you can see, filtered by folder, tag or a name/SKU prefix."""
    return await listing.page_of(Page[ProductRead], products_service.list_, ProductRead.of)


@router.get("/{product_id}", response_model=ProductRead)
async def get_product(product: ProductForView) -> ProductRead:
    """One product you can see."""
    return ProductRead.of(product)


@router.patch("/{product_id}", response_model=ProductRead)
@raises(FolderNotFound, NotAllowed, SkuTaken, IngestLimitTooHigh, InvalidationPending)
async def update_product(
    product: ProductForEdit,
    body: ProductUpdate,
    services: ServicesDep,
    principal: CurrentPrincipal,
) -> ProductRead:
    """Change a product (editor); moving it to another folder needs owner."""
    updated = await products_service.update(
        services, principal=principal, product=product, product_in=body
    )
    return ProductRead.of(updated)


@router.delete("/{product_id}", **NO_CONTENT)
@raises(ProductInUse, InvalidationPending)
async def delete_product(product: ProductForOwner, services: ServicesDep) -> None:
    """Delete a product no device uses (409 otherwise)."""
    await products_service.delete(services, product=product)
