"""Auth endpoints: exchange a Firebase ID token for session tokens, rotate, log out, me."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from app.auth import quotas
from app.auth import service as auth_service
from app.auth.dependencies import UserPrincipal
from app.auth.exceptions import (
    AccountDisabled,
    IdentityProviderUnavailable,
    InvalidCredentials,
    RefreshTokenReused,
)
from app.auth.schemas import MeRead, RefreshRequest, SessionCreate, SessionTokens
from app.core.feed_cache import InvalidationPending
from app.core.openapi import raises
from app.core.routing import API_PREFIX
from app.core.services import ServicesDep

router = APIRouter(prefix=f"{API_PREFIX}/auth", tags=["auth"])

# RFC 6749 §5.1: responses carrying tokens must not be cached.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@router.post("/session", response_model=SessionTokens)
@raises(InvalidCredentials, AccountDisabled, IdentityProviderUnavailable, InvalidationPending)
async def create_session(
    body: SessionCreate, response: Response, services: ServicesDep
) -> SessionTokens:
    """Exchange a Firebase ID token for an access token (short) and a refresh token."""
    response.headers.update(NO_STORE)
    return await auth_service.create_session(services, id_token_in=body.id_token)


@router.post("/refresh", response_model=SessionTokens)
@raises(
    InvalidCredentials,
    RefreshTokenReused,
    AccountDisabled,
    IdentityProviderUnavailable,
    InvalidationPending,
)
async def refresh(body: RefreshRequest, response: Response, services: ServicesDep) -> SessionTokens:
    """Rotate the session tokens; a refresh token works once.

    Presenting a spent refresh token again revokes its whole session.
    """
    response.headers.update(NO_STORE)
    return await auth_service.refresh(services, refresh_token_in=body.refresh_token)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, response_model=None)
@raises(InvalidCredentials, InvalidationPending)
async def logout(body: RefreshRequest, services: ServicesDep) -> None:
    """End the session of this refresh token (its access tokens stop working too)."""
    await auth_service.logout(
        services.engine,
        settings=services.settings,
        refresh_token_in=body.refresh_token,
        principals=services.principals,
    )


@router.get("/me", response_model=MeRead)
async def me(principal: UserPrincipal, services: ServicesDep, request: Request) -> MeRead:
    """The caller's profile, roles and request quota."""
    profile = await auth_service.me(services.engine, principal=principal)
    quota = quotas.quota_for(principal, services.settings, request=request)
    return profile.model_copy(update={"quota": quota})
