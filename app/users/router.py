"""Admin endpoints to list, inspect, disable and promote users."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.auth.dependencies import AdminPrincipal
from app.auth.exceptions import IdentityProviderUnavailable
from app.auth.models import User
from app.core.feed_cache import InvalidationPending
from app.core.openapi import raises
from app.core.pagination import Page, PageParamsDep
from app.core.routing import API_PREFIX
from app.core.services import ServicesDep
from app.users import service as users_service
from app.users.dependencies import UserForAdmin
from app.users.exceptions import EmailNotVerified
from app.users.schemas import UserRead, UserUpdate

router = APIRouter(prefix=f"{API_PREFIX}/users", tags=["users"])


@router.get("", response_model=Page[UserRead])
async def list_users(
    _admin: AdminPrincipal,
    services: ServicesDep,
    page: PageParamsDep,
    email_prefix: Annotated[str | None, Query(min_length=1, max_length=254)] = None,
) -> Page[UserRead]:
    """Users oldest first, optionally those whose email starts with `email_prefix`."""
    users, cursor = await users_service.list_(services.engine, page=page, email_prefix=email_prefix)
    return Page[UserRead].of(users, cursor, UserRead.model_validate)


@router.get("/{uid}", response_model=UserRead)
async def get_user(user: UserForAdmin) -> User:
    """One user by Firebase uid."""
    return user


@router.patch("/{uid}", response_model=UserRead)
@raises(EmailNotVerified, IdentityProviderUnavailable, InvalidationPending)
async def update_user(body: UserUpdate, user: UserForAdmin, services: ServicesDep) -> User:
    """Disable/enable a user or grant/revoke admin (also in Firebase); disabling ends sessions."""
    return await users_service.update(
        services.engine,
        services.firebase,
        settings=services.settings,
        user=user,
        user_in=body,
        principals=services.principals,
    )
