"""Load a user for an admin route (404 when there is none)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path

from app.auth.dependencies import AdminPrincipal
from app.auth.exceptions import UserNotFound
from app.auth.models import User
from app.core.openapi import raises
from app.core.services import ServicesDep
from app.users import service as users_service

UidPath = Annotated[str, Path(min_length=1, max_length=128)]


@raises(UserNotFound)
async def get_user_for_admin(uid: UidPath, _admin: AdminPrincipal, services: ServicesDep) -> User:
    """The user named in the path, for an admin or the master token."""
    return await users_service.get_or_404(services.engine, uid=uid)


UserForAdmin = Annotated[User, Depends(get_user_for_admin)]
