"""Who is calling, as `Annotated` dependencies; every protected route uses one of these.

`OptionalPrincipal` checks credentials and writes nothing; FastAPI resolves it once per request
however many dependencies ask for it. The others build on it, check what the route needs, and
only then record the user as seen (so a refused request writes nothing).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app.auth import service as auth_service
from app.auth.exceptions import (
    AccountDisabled,
    AdminRequired,
    CredentialsRequired,
    IdentityProviderUnavailable,
    InvalidCredentials,
    UserRequired,
)
from app.auth.principal import Principal
from app.core import openapi
from app.core.feed_cache import InvalidationPending
from app.core.openapi import ANONYMOUS, BEARER, DEVICE_KEY, MASTER
from app.core.services import Services, ServicesDep
from app.ratelimit import dependencies as ratelimit
from app.ratelimit.exceptions import RateLimitExceeded

DEVICE_KEY_HEADER = "X-Device-Key"

# Declared for the OpenAPI "Authorize" dialog; the raw headers are parsed below, strictly.
bearer_scheme = HTTPBearer(
    auto_error=False,
    description="Firebase ID token, API access token, master token, or a device key (dk_...)",
)
device_key_scheme = APIKeyHeader(name=DEVICE_KEY_HEADER, auto_error=False)


@openapi.accepts(ANONYMOUS, BEARER, MASTER, DEVICE_KEY)
@openapi.raises(InvalidCredentials, AccountDisabled, RateLimitExceeded, IdentityProviderUnavailable)
async def get_authentication(
    request: Request,
    services: ServicesDep,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    _device_key: Annotated[str | None, Depends(device_key_scheme)],
) -> auth_service.Authentication | None:
    """Check the request's credentials; None when it carries none, 401 when they are bad.

    Failures count against the client address (`auth_failures`): past the limit, 429.
    """
    return await authenticate_request(request, services)


async def authenticate_request(
    request: Request, services: Services
) -> auth_service.Authentication | None:
    """`get_authentication` without FastAPI, for routes served outside the router."""
    if DEVICE_KEY_HEADER not in request.headers and "authorization" not in request.headers:
        return None
    address = ratelimit.client_ip(request)
    services.auth_failures.check(address)
    try:
        return await _authenticate(request, services)
    except InvalidCredentials:
        await services.auth_failures.record_failure(request, address)
        raise


async def _authenticate(request: Request, services: Services) -> auth_service.Authentication | None:
    device_key = request.headers.get(DEVICE_KEY_HEADER)
    if device_key is not None:
        return await auth_service.authenticate_device(
            services.engine, key=device_key.strip(), key_cache=services.device_keys
        )
    authorization = request.headers.get("Authorization")
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise InvalidCredentials("Send credentials as `Authorization: Bearer <token>`")
    return await auth_service.authenticate(services, token)


AuthenticationDep = Annotated[auth_service.Authentication | None, Depends(get_authentication)]


async def get_optional_principal(authentication: AuthenticationDep) -> Principal | None:
    """The caller, or None for an anonymous request (bad credentials are still 401)."""
    return None if authentication is None else authentication.principal


OptionalPrincipal = Annotated[Principal | None, Depends(get_optional_principal)]


@openapi.raises(UserRequired)
def _people_only(principal: Principal) -> None:
    """Refuse devices."""
    if principal.is_device:
        raise UserRequired("Devices may not use this endpoint")


@openapi.raises(AdminRequired)
def _admins_only(principal: Principal) -> None:
    """Refuse everyone but admins and the master token."""
    if not principal.is_admin:
        raise AdminRequired("This endpoint is for administrators")


async def admit(
    services: Services,
    authentication: auth_service.Authentication | None,
    check: Callable[[Principal], None],
) -> Principal:
    """Require credentials, apply `check`, and only then record the caller as seen."""
    if authentication is None:
        raise CredentialsRequired("This endpoint needs credentials")
    check(authentication.principal)
    await auth_service.accept(services, authentication=authentication)
    return authentication.principal


def any_caller(principal: Principal) -> None:
    """Every authenticated kind is welcome."""


def _principal_dependency(
    check: Callable[[Principal], None], doc: str, *, schemes: tuple[str, ...]
) -> Callable[..., Awaitable[Principal]]:
    """A dependency that requires credentials, applies `check`, and only then records the
    caller as seen (so a refused request writes nothing)."""

    async def dependency(services: ServicesDep, authentication: AuthenticationDep) -> Principal:
        return await admit(services, authentication, check)

    dependency.__doc__ = doc
    refused = getattr(check, openapi.ERRORS_ATTR, ())
    openapi.raises(CredentialsRequired, InvalidationPending, *refused)(dependency)
    return openapi.accepts(*schemes)(dependency)


get_current_principal = _principal_dependency(
    any_caller,
    "Any authenticated caller (user, admin, master or device).",
    schemes=(BEARER, MASTER, DEVICE_KEY),
)
get_user_principal = _principal_dependency(
    _people_only,
    "A signed-in person (or the master token); devices are refused.",
    schemes=(BEARER, MASTER),
)
get_admin_principal = _principal_dependency(
    _admins_only, "An admin or the master token.", schemes=(BEARER, MASTER)
)


CurrentPrincipal = Annotated[Principal, Depends(get_current_principal)]
UserPrincipal = Annotated[Principal, Depends(get_user_principal)]
AdminPrincipal = Annotated[Principal, Depends(get_admin_principal)]
