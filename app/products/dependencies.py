"""Load a product and check the caller's role on it; the product-creation quota."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from app.auth.dependencies import CurrentPrincipal
from app.auth.principal import Principal
from app.core.deps import EngineDep
from app.permissions.models import Role
from app.products import service as products_service
from app.products.models import Product
from app.ratelimit import policies
from app.ratelimit.dependencies import RateLimit


def product_for(role: Role) -> Callable[..., Awaitable[Product]]:
    """A dependency loading `{product_id}` if the caller holds `role` (404 if invisible)."""

    async def load(product_id: str, engine: EngineDep, principal: CurrentPrincipal) -> Product:
        return await products_service.get_for(
            engine, principal=principal, product_id=product_id, role=role
        )

    return load


ProductForView = Annotated[Product, Depends(product_for(Role.VIEWER))]
ProductForEdit = Annotated[Product, Depends(product_for(Role.EDITOR))]
ProductForOwner = Annotated[Product, Depends(product_for(Role.OWNER))]


@dataclass(frozen=True, slots=True)
class _CreationQuota:
    request: Request

    async def spend(self, principal: Principal) -> None:
        """Count one product creation against the caller's quota (429 once it is spent).

        Called from the handler once the body has validated, so a malformed request does not
        use up the quota (a FastAPI dependency would run before body validation). Admins and
        the master token are exempt (`product_create` policy, app/ratelimit).
        """
        await RateLimit(policies.PRODUCT_CREATE)(self.request, principal)


def _creation_quota(request: Request) -> _CreationQuota:
    return _CreationQuota(request)


ProductCreationQuota = Annotated[_CreationQuota, Depends(_creation_quota)]
