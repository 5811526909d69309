"""Errors of the products domain."""

from __future__ import annotations

from app.core.errors import Conflict, NotFound


class ProductNotFound(NotFound):
    """No such product, or the caller may not see it."""

    type = "product-not-found"
    title = "Product not found"


class SkuTaken(Conflict):
    """The owner already has a product with this SKU."""

    type = "sku-taken"
    title = "A product with this SKU already exists"


class ProductInUse(Conflict):
    """Devices still use the product."""

    type = "product-in-use"
    title = "Product is used by devices"
