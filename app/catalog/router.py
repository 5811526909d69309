"""The catalog's routes: folders, products, devices, and sharing on each of them.

Sharing: `GET|PUT|DELETE /{folders|products|devices}/{id}/permissions[/{user_id}]`, owners
only. `user_id` is a Firebase uid, or an email address (anything with `@`): an email with no
verified account yet gets a pending invite and an invitation email.
"""

# No `from __future__ import annotations` here: the sharing routes are made in a loop and
# annotated with a local `Annotated` alias, which FastAPI must see evaluated.

from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request

from app.auth import quotas
from app.auth.dependencies import CurrentPrincipal
from app.auth.exceptions import UserNotFound
from app.catalog.dependencies import resource_dep
from app.catalog.devices.router import router as devices_router
from app.catalog.folders.router import router as folders_router
from app.catalog.models import Device, Folder, Product, Resource
from app.catalog.permissions import sharing
from app.catalog.permissions.exceptions import InvalidEmail, LastOwner, TooManyShares
from app.catalog.permissions.models import Role
from app.catalog.permissions.schemas import ShareIn, ShareRead
from app.catalog.products.router import router as products_router
from app.core.feed_cache import InvalidationPending
from app.core.openapi import raises
from app.core.pagination import Page
from app.core.responses import NO_CONTENT
from app.core.routing import API_PREFIX
from app.core.services import ServicesDep
from app.ratelimit import policies
from app.ratelimit.exceptions import RateLimitExceeded

sharing_router = APIRouter(prefix=API_PREFIX, tags=["permissions"])

UserRef = Annotated[str, Path(min_length=1, max_length=320, description="uid or email")]


def _share_read(share: sharing.Share) -> ShareRead:
    return ShareRead.model_validate(asdict(share))


def _add_sharing_routes(collection: str, owned: Callable[..., Awaitable[Resource]]) -> None:
    """The three sharing routes of one resource collection (owners only)."""
    OwnedResource = Annotated[Resource, Depends(owned)]  # noqa: N806
    base = f"/{collection}/{{resource_id}}/permissions"

    @sharing_router.get(base, response_model=Page[ShareRead], name=f"list_{collection}_permissions")
    async def list_permissions(resource: OwnedResource, services: ServicesDep) -> Page[ShareRead]:
        """Who has which role on this resource itself, and pending invites (owners only)."""
        shares = await sharing.list_shares(services.engine, resource=resource)
        return Page[ShareRead].of(shares, None, _share_read)

    @sharing_router.put(
        f"{base}/{{user_id}}", response_model=ShareRead, name=f"set_{collection}_permission"
    )
    @raises(
        UserNotFound,
        InvalidEmail,
        TooManyShares,
        LastOwner,
        RateLimitExceeded,
        InvalidationPending,
    )
    async def set_permission(
        request: Request,
        resource: OwnedResource,
        user_id: UserRef,
        body: ShareIn,
        services: ServicesDep,
        principal: CurrentPrincipal,
    ) -> ShareRead:
        """Give a user (uid) or an email a role; unknown emails get an invite (owners only).

        Invitations are limited per inviting user (RATE_LIMIT_INVITES_*)."""

        async def spend_invite() -> None:
            await quotas.spend(request, principal, policies.INVITES)

        share = await sharing.set_share(
            services,
            principal=principal,
            resource=resource,
            resource_name=resource.name,
            user_ref=user_id,
            role=body.role,
            spend_invite=spend_invite,
        )
        return _share_read(share)

    @sharing_router.delete(
        f"{base}/{{user_id}}", **NO_CONTENT, name=f"remove_{collection}_permission"
    )
    @raises(UserNotFound, LastOwner, InvalidationPending)
    async def remove_permission(
        resource: OwnedResource, user_id: UserRef, services: ServicesDep
    ) -> None:
        """Remove a user's grant or an email's invite; the last owner stays (owners only)."""
        await sharing.remove_share(
            services.engine, resource=resource, user_ref=user_id, access=services.access
        )


_add_sharing_routes("folders", resource_dep(Folder, Role.OWNER, path="resource_id"))
_add_sharing_routes("products", resource_dep(Product, Role.OWNER, path="resource_id"))
_add_sharing_routes("devices", resource_dep(Device, Role.OWNER, path="resource_id"))

router = APIRouter()
router.include_router(folders_router)
router.include_router(products_router)
router.include_router(devices_router)
router.include_router(sharing_router)
