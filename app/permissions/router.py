"""Sharing: `GET|PUT|DELETE /{folders|products|devices}/{id}/permissions[/{user_id}]`.

`user_id` is a Firebase uid, or an email address (anything with `@`): an email with no
verified account yet gets a pending invite and an invitation email.
"""

# No `from __future__ import annotations` here: the routes below are made in a loop and
# annotated with a local `Annotated` alias, which FastAPI must see evaluated.

from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from app.auth.dependencies import CurrentPrincipal
from app.core.deps import CeleryDep, EngineDep, SettingsDep
from app.core.pagination import Page
from app.devices import service as devices_service
from app.folders import service as folders_service
from app.permissions import sharing
from app.permissions.models import Role
from app.permissions.schemas import ShareIn, ShareRead
from app.permissions.service import Resource
from app.products import service as products_service

router = APIRouter(tags=["permissions"])

UserRef = Annotated[str, Path(min_length=1, max_length=320, description="uid or email")]


async def _load_folder(
    engine: EngineDep, principal: CurrentPrincipal, resource_id: str
) -> Resource:
    return await folders_service.get_for(
        engine, principal=principal, folder_id=resource_id, role=Role.OWNER
    )


async def _load_product(
    engine: EngineDep, principal: CurrentPrincipal, resource_id: str
) -> Resource:
    return await products_service.get_for(
        engine, principal=principal, product_id=resource_id, role=Role.OWNER
    )


async def _load_device(
    engine: EngineDep, principal: CurrentPrincipal, resource_id: str
) -> Resource:
    return await devices_service.get_for(
        engine, principal=principal, device_id=resource_id, role=Role.OWNER
    )


LOADERS: dict[str, Callable[..., Awaitable[Resource]]] = {
    "folders": _load_folder,
    "products": _load_product,
    "devices": _load_device,
}


def _share_read(share: sharing.Share) -> ShareRead:
    return ShareRead.model_validate(asdict(share))


def _add_routes(collection: str, load: Callable[..., Awaitable[Resource]]) -> None:
    """The three sharing routes of one resource collection (owners only)."""
    OwnedResource = Annotated[Resource, Depends(load)]  # noqa: N806
    base = f"/{collection}/{{resource_id}}/permissions"

    @router.get(base, response_model=Page[ShareRead], name=f"list_{collection}_permissions")
    async def list_permissions(resource: OwnedResource, engine: EngineDep) -> Page[ShareRead]:
        """Who has which role on this resource itself, and pending invites (owners only)."""
        shares = await sharing.list_shares(engine, resource=resource)
        return Page[ShareRead](items=[_share_read(s) for s in shares], next_cursor=None)

    @router.put(
        f"{base}/{{user_id}}", response_model=ShareRead, name=f"set_{collection}_permission"
    )
    async def set_permission(
        resource: OwnedResource,
        user_id: UserRef,
        body: ShareIn,
        engine: EngineDep,
        celery: CeleryDep,
        settings: SettingsDep,
        principal: CurrentPrincipal,
    ) -> ShareRead:
        """Give a user (uid) or an email a role; unknown emails get an invite (owners only)."""
        share = await sharing.set_share(
            engine,
            celery,
            principal=principal,
            resource=resource,
            resource_name=resource.name,
            user_ref=user_id,
            role=body.role,
            cap=settings.shares_per_resource_max,
        )
        return _share_read(share)

    @router.delete(
        f"{base}/{{user_id}}",
        status_code=status.HTTP_204_NO_CONTENT,
        response_class=Response,
        response_model=None,
        name=f"remove_{collection}_permission",
    )
    async def remove_permission(
        resource: OwnedResource, user_id: UserRef, engine: EngineDep
    ) -> Response:
        """Remove a user's grant or an email's invite; the last owner stays (owners only)."""
        await sharing.remove_share(engine, resource=resource, user_ref=user_id)
        return Response(status_code=status.HTTP_204_NO_CONTENT)


for _collection, _load in LOADERS.items():
    _add_routes(_collection, _load)
