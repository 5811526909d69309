"""FastAPI integration: the limit every /api/v1 request passes, per-route policies, quotas.

Decisions are recorded on `request.state` so that `RateLimitHeadersMiddleware` can put the
headers on whatever response the route produces (a model, a `Response`, an error).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request

from app.auth.dependencies import OptionalPrincipal
from app.auth.principal import Principal, PrincipalKind
from app.core.config import Settings
from app.ratelimit import policies
from app.ratelimit.algorithm import Decision
from app.ratelimit.exceptions import RateLimitExceeded
from app.ratelimit.network import request_client_ip
from app.ratelimit.policies import Policy
from app.ratelimit.schemas import QuotaRead
from app.ratelimit.service import RateLimiter

STATE_KEY = "rate_limit"
SELF_LIMITED = "__rate_limit_self_limited__"
DEVICE_OVERRIDE_WINDOW_MS = 60_000

Record = tuple[Policy, Decision]
F = TypeVar("F", bound=Callable[..., Any])


def get_limiter(request: Request) -> RateLimiter:
    """The limiter made in the lifespan."""
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


# The caller as identity resolves it (None: anonymous, counted by client IP). Bad
# credentials are refused by identity with 401 before any limit is counted.
CallerDep = OptionalPrincipal


def client_ip(request: Request) -> str:
    """The client address under `TRUSTED_PROXIES`."""
    settings: Settings = request.app.state.settings
    return request_client_ip(request, settings.trusted_proxies)


def records(request: Request) -> list[Record]:
    """The decisions made for this request so far."""
    found: list[Record] | None = getattr(request.state, STATE_KEY, None)
    if found is None:
        found = []
        setattr(request.state, STATE_KEY, found)
    return found


def rate_limit_headers(recorded: list[Record]) -> dict[str, str]:
    """The IETF draft fields for every policy applied, and the X- headers for the tightest."""
    if not recorded:
        return {}
    tightest_policy, tightest = min(
        recorded, key=lambda r: (r[1].allowed, r[1].remaining, -r[1].reset_ms)
    )
    headers = {
        "RateLimit-Policy": ", ".join(
            f'"{p.name}";q={p.limit};w={p.window_s}' for p, _ in recorded
        ),
        "RateLimit": ", ".join(f'"{p.name}";r={d.remaining};t={d.reset_s}' for p, d in recorded),
        "X-RateLimit-Limit": str(tightest_policy.limit),
        "X-RateLimit-Remaining": str(tightest.remaining),
        "X-RateLimit-Reset": str(tightest.reset_s),
    }
    rejected = [d.retry_after_s for _, d in recorded if not d.allowed]
    if rejected:
        headers["Retry-After"] = str(max(rejected))
    return headers


async def check(request: Request, policy: str | Policy, key: str) -> Decision | None:
    """Count this request for `key` under `policy`; raise `RateLimitExceeded` when over.

    Returns None when rate limiting is switched off.
    """
    settings: Settings = request.app.state.settings
    if not settings.rate_limit_enabled:
        return None
    limiter = get_limiter(request)
    if isinstance(policy, str):
        policy = limiter.policies[policy]
    decision = await limiter.hit(policy, key)
    recorded = records(request)
    recorded.append((policy, decision))
    if not decision.allowed:
        raise RateLimitExceeded(
            f"Quota of {policy.limit} requests per {policy.window_s} s used up "
            f"(policy {policy.name}); retry in {decision.retry_after_s} s",
            headers=rate_limit_headers(recorded),
            extra={"policy": policy.name, "retry_after": decision.retry_after_s},
        )
    return decision


async def check_device(
    request: Request, device_id: str, *, limit_per_minute: int | None = None
) -> Decision | None:
    """The device ingest limit, with a product's `ingest_limit_per_minute` when it sets one."""
    policy = get_limiter(request).policies[policies.DEVICE]
    if limit_per_minute is not None:
        policy = Policy(policies.DEVICE, limit_per_minute, DEVICE_OVERRIDE_WINDOW_MS)
    return await check(request, policy, policies.identity_key(_device(device_id), ""))


def _device(device_id: str) -> Principal:
    return Principal(kind=PrincipalKind.DEVICE, uid=device_id, device_id=device_id)


def limits_itself(endpoint: F) -> F:
    """Mark a route that applies the device limit itself (with `check_device`).

    For device callers the router-wide check is skipped on such a route, so a request is still
    counted once, under the product's override when there is one.
    """
    setattr(endpoint, SELF_LIMITED, True)
    return endpoint


async def enforce_rate_limit(request: Request, principal: CallerDep) -> None:
    """The router-wide limit: anonymous by client IP, users, admins, devices; master exempt."""
    name = policies.default_policy_name(principal)
    if name is None:
        return
    if name == policies.DEVICE and getattr(request.scope.get("endpoint"), SELF_LIMITED, False):
        return
    await check(request, name, policies.identity_key(principal, client_ip(request)))


class RateLimit:
    """A per-route policy on top of the router-wide one: `Depends(RateLimit("product_create"))`.

    Admins (and the master token) are not limited by policies marked `admin_exempt`.
    """

    def __init__(self, policy: str) -> None:
        self.policy = policy

    async def __call__(self, request: Request, principal: CallerDep) -> None:
        """Count the request under this route's policy."""
        policy = get_limiter(request).policies[self.policy]
        if principal is not None and principal.kind is PrincipalKind.MASTER:
            return
        if policy.admin_exempt and principal is not None and principal.is_admin:
            return
        await check(request, policy, policies.identity_key(principal, client_ip(request)))


def quota_for(
    principal: Principal | None, settings: Settings, *, request: Request | None = None
) -> QuotaRead:
    """The caller's router-wide quota; with the request, also what is left right now."""
    name = policies.default_policy_name(principal)
    if name is None:
        return QuotaRead(policy=None, exempt=True, limit=None, window_s=None)
    policy = policies.policies_from(settings)[name]
    quota = QuotaRead(policy=name, exempt=False, limit=policy.limit, window_s=policy.window_s)
    if request is not None:
        for recorded_policy, decision in records(request):
            if recorded_policy.name == name:
                quota.remaining = decision.remaining
                quota.reset_s = decision.reset_s
    return quota
