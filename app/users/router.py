"""Admin endpoints to list, inspect, disable and promote users."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.auth.dependencies import AdminPrincipal, FirebaseDep
from app.core.deps import EngineDep, SettingsDep
from app.users import service as users_service
from app.users.dependencies import UserForAdmin
from app.users.models import User
from app.users.schemas import UserPage, UserRead, UserUpdate

router = APIRouter(prefix="/users", tags=["users"])


@router.get("", response_model=UserPage)
async def list_users(
    _admin: AdminPrincipal,
    engine: EngineDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    email_prefix: Annotated[str | None, Query(min_length=1, max_length=254)] = None,
) -> UserPage:
    """Users oldest first, optionally those whose email starts with `email_prefix`."""
    return await users_service.list_users(
        engine, limit=limit, cursor=cursor, email_prefix=email_prefix
    )


@router.get("/{uid}", response_model=UserRead)
async def get_user(user: UserForAdmin) -> User:
    """One user by Firebase uid."""
    return user


@router.patch("/{uid}", response_model=UserRead)
async def update_user(
    body: UserUpdate,
    user: UserForAdmin,
    settings: SettingsDep,
    engine: EngineDep,
    firebase: FirebaseDep,
) -> User:
    """Disable/enable a user or grant/revoke admin (also in Firebase); disabling ends sessions."""
    return await users_service.update(engine, firebase, settings=settings, user=user, user_in=body)
