"""Which rate-limit quota applies to a caller: the limit every /api/v1 request passes.

The limiter (`app.ratelimit`) counts requests against named policies for keys; this module
maps callers onto them: anonymous requests by client address, users and admins by uid,
devices by device id; the master token is exempt.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection

from app.auth.dependencies import OptionalPrincipal
from app.auth.principal import Principal, PrincipalKind
from app.core.config import Settings
from app.core.openapi import raises
from app.core.services import services_of
from app.ratelimit import dependencies as ratelimit
from app.ratelimit import policies
from app.ratelimit.exceptions import RateLimitExceeded
from app.ratelimit.schemas import QuotaRead


def policy_for(principal: Principal | None) -> str | None:
    """The policy every request of this caller passes; None for the exempt master token."""
    if principal is None:
        return policies.ANONYMOUS
    if principal.kind is PrincipalKind.MASTER:
        return None
    if principal.kind is PrincipalKind.DEVICE:
        return policies.DEVICE
    return policies.ADMIN if principal.is_admin else policies.USER


def identity_key(principal: Principal | None, client_ip: str) -> str:
    """Whose counter a request uses: the device, the user, or the client address."""
    if principal is None:
        return f"ip:{client_ip}"
    if principal.kind is PrincipalKind.DEVICE:
        return ratelimit.device_key(principal.device_id or principal.uid)
    return f"{principal.kind.value}:{principal.uid}"


@raises(RateLimitExceeded)
async def enforce_rate_limit(request: HTTPConnection, principal: OptionalPrincipal) -> None:
    """The router-wide limit: anonymous by client IP, users, admins, devices; master exempt."""
    name = policy_for(principal)
    if name is None:
        return
    if name == policies.DEVICE and ratelimit.is_self_limited(request):
        return
    await ratelimit.check(request, name, identity_key(principal, ratelimit.client_ip(request)))


async def spend(connection: HTTPConnection, principal: Principal | None, policy_name: str) -> None:
    """Count a request under a per-route policy (429 once spent); the master token is exempt,
    and admins too for policies marked `admin_exempt`."""
    if principal is not None and principal.kind is PrincipalKind.MASTER:
        return
    policy = services_of(connection.app).limiter.policies[policy_name]
    if policy.admin_exempt and principal is not None and principal.is_admin:
        return
    key = identity_key(principal, ratelimit.client_ip(connection))
    await ratelimit.check(connection, policy, key)


@raises(RateLimitExceeded)
class RateLimit:
    """A per-route policy on top of the router-wide one: `Depends(RateLimit("product_create"))`."""

    def __init__(self, policy: str) -> None:
        self.policy = policy

    async def __call__(self, request: HTTPConnection, principal: OptionalPrincipal) -> None:
        """Count the request under this route's policy."""
        await spend(request, principal, self.policy)


def quota_for(
    principal: Principal | None, settings: Settings, *, request: HTTPConnection | None = None
) -> QuotaRead:
    """The caller's router-wide quota; with the request, also what is left right now."""
    name = policy_for(principal)
    if name is None:
        return QuotaRead(policy=None, exempt=True, limit=None, window_s=None)
    policy = policies.policies_from(settings)[name]
    quota = QuotaRead(policy=name, exempt=False, limit=policy.limit, window_s=policy.window_s)
    if request is not None:
        for recorded_policy, decision in ratelimit.records(request):
            if recorded_policy.name == name:
                quota.remaining = decision.remaining
                quota.reset_s = decision.reset_s
    return quota
