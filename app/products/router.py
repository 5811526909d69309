"""Products: `POST|GET /products`, `GET|PATCH|DELETE /products/{product_id}`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app.auth.dependencies import CurrentPrincipal, UserPrincipal
from app.core.deps import EngineDep
from app.core.models import IdStr
from app.core.pagination import Page, PageParamsDep
from app.products import service as products_service
from app.products.dependencies import (
    ProductCreationQuota,
    ProductForEdit,
    ProductForOwner,
    ProductForView,
)
from app.products.models import Product
from app.products.schemas import ProductCreate, ProductRead, ProductUpdate

router = APIRouter(prefix="/products", tags=["products"])


def product_read(product: Product) -> ProductRead:
    """The API view of a stored product."""
    return ProductRead.model_validate(product.model_dump())


@router.post("", response_model=ProductRead, status_code=status.HTTP_201_CREATED)
async def create_product(
    body: ProductCreate,
    engine: EngineDep,
    principal: UserPrincipal,
    quota: ProductCreationQuota,
) -> ProductRead:
    """Create a product (in a folder you can edit); non-admins have a creation quota."""
    await quota.spend(principal)
    product = await products_service.create(engine, principal=principal, product_in=body)
    return product_read(product)


@router.get("", response_model=Page[ProductRead])
async def list_products(
    engine: EngineDep,
    principal: CurrentPrincipal,
    page: PageParamsDep,
    folder_id: Annotated[IdStr | None, Query(description="only products in this folder")] = None,
    tag: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
    q: Annotated[
        str | None, Query(min_length=1, max_length=100, description="name or SKU prefix")
    ] = None,
) -> Page[ProductRead]:
    """Products you can see, filtered by folder, tag or a name/SKU prefix."""
    items, cursor = await products_service.list_(
        engine, principal=principal, page=page, folder_id=folder_id, tag=tag, q=q
    )
    return Page[ProductRead](items=[product_read(p) for p in items], next_cursor=cursor)


@router.get("/{product_id}", response_model=ProductRead)
async def get_product(product: ProductForView) -> ProductRead:
    """One product you can see."""
    return product_read(product)


@router.patch("/{product_id}", response_model=ProductRead)
async def update_product(
    product: ProductForEdit, body: ProductUpdate, engine: EngineDep, principal: CurrentPrincipal
) -> ProductRead:
    """Change a product (editor); moving it to another folder needs owner."""
    updated = await products_service.update(
        engine, principal=principal, product=product, product_in=body
    )
    return product_read(updated)


@router.delete(
    "/{product_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    response_model=None,
)
async def delete_product(product: ProductForOwner, engine: EngineDep) -> Response:
    """Delete a product no device uses (409 otherwise)."""
    await products_service.delete(engine, product=product)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
