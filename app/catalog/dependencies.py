"""Load a catalog resource named in the path and check the caller's role on it.

One factory, `resource_dep`, makes every loader: `DeviceForEdit` loads `{device_id}` if the
caller holds editor on it (404 when it may not see it, 403 when its role is too weak).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Request

from app.auth import quotas
from app.auth.dependencies import CurrentPrincipal
from app.auth.principal import Principal
from app.catalog import crud
from app.catalog.models import Device, Folder, Product
from app.catalog.permissions.exceptions import NotAllowed
from app.catalog.permissions.models import Role
from app.core.models import IdPath
from app.core.openapi import raises
from app.core.pagination import FiltersT, Listing, listing
from app.core.services import Services, ServicesDep
from app.ratelimit import policies
from app.ratelimit.exceptions import RateLimitExceeded

R = TypeVar("R", Folder, Product, Device)


def visible(filters: type[FiltersT]) -> Callable[..., Awaitable[Listing[FiltersT]]]:
    """The input of a route listing what the caller can see (`principal`), by `filters`."""
    return listing(filters, scope="principal", scope_dep=CurrentPrincipal)


def resource_dep(model: type[R], role: Role, *, path: str) -> Callable[..., Awaitable[R]]:
    """A dependency loading the `model` named by path parameter `path`, if the caller holds
    `role` on it (a device key holds viewer on its own device only)."""

    async def load(services: Services, principal: Principal, **path_params: str) -> R:
        return await crud.get_for(
            services.engine,
            model,
            principal=principal,
            resource_id=path_params[path],
            role=role,
            access=services.access,
        )

    # FastAPI reads a dependency's parameters from its signature: name the path parameter.
    load.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(path, inspect.Parameter.KEYWORD_ONLY, annotation=IdPath),
            inspect.Parameter("services", inspect.Parameter.KEYWORD_ONLY, annotation=ServicesDep),
            inspect.Parameter(
                "principal", inspect.Parameter.KEYWORD_ONLY, annotation=CurrentPrincipal
            ),
        ],
        return_annotation=model,
    )
    load.__doc__ = (
        f"The {model.kind.resource_type.value} `{{{path}}}`, for a caller with {role.value}."
    )
    return raises(model.kind.not_found, NotAllowed)(load)


FolderForView = Annotated[Folder, Depends(resource_dep(Folder, Role.VIEWER, path="folder_id"))]
FolderForEdit = Annotated[Folder, Depends(resource_dep(Folder, Role.EDITOR, path="folder_id"))]
FolderForOwner = Annotated[Folder, Depends(resource_dep(Folder, Role.OWNER, path="folder_id"))]
ProductForView = Annotated[Product, Depends(resource_dep(Product, Role.VIEWER, path="product_id"))]
ProductForEdit = Annotated[Product, Depends(resource_dep(Product, Role.EDITOR, path="product_id"))]
ProductForOwner = Annotated[Product, Depends(resource_dep(Product, Role.OWNER, path="product_id"))]
DeviceForView = Annotated[Device, Depends(resource_dep(Device, Role.VIEWER, path="device_id"))]
DeviceForEdit = Annotated[Device, Depends(resource_dep(Device, Role.EDITOR, path="device_id"))]
DeviceForOwner = Annotated[Device, Depends(resource_dep(Device, Role.OWNER, path="device_id"))]


@dataclass(frozen=True, slots=True)
class _CreationQuota:
    request: Request

    async def spend(self, principal: Principal) -> None:
        """Count one product creation against the caller's quota (429 once it is spent).

        Called from the handler once the body has validated, so a malformed request does not
        use up the quota (a FastAPI dependency would run before body validation). Admins and
        the master token are exempt (`product_create` policy).
        """
        await quotas.spend(self.request, principal, policies.PRODUCT_CREATE)


@raises(RateLimitExceeded)
async def _creation_quota(request: Request) -> _CreationQuota:
    return _CreationQuota(request)


ProductCreationQuota = Annotated[_CreationQuota, Depends(_creation_quota)]
