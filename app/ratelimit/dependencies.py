"""The limiter in HTTP terms: count a request for a key, record the decision, raise 429.

This module knows policies and keys, not callers: which policy and key a caller gets is
decided by `app.auth.quotas`. Decisions are recorded on the request's state so that
the request middleware can put the headers on whatever response the route produces
(`app.ratelimit.middleware.recorded_headers`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TypeVar

from starlette.requests import HTTPConnection

from app.core.services import services_of
from app.ratelimit import policies
from app.ratelimit.algorithm import Decision
from app.ratelimit.exceptions import RateLimitExceeded
from app.ratelimit.network import request_client_ip
from app.ratelimit.policies import Policy

STATE_KEY = "rate_limit"
SELF_LIMITED = "__rate_limit_self_limited__"
DEVICE_OVERRIDE_WINDOW_MS = 60_000

Record = tuple[Policy, Decision]
F = TypeVar("F", bound=Callable[..., object])


def client_ip(connection: HTTPConnection) -> str:
    """The client address under `TRUSTED_PROXIES`."""
    return request_client_ip(connection, services_of(connection.app).settings.trusted_proxies)


def records(connection: HTTPConnection) -> list[Record]:
    """The decisions made for this request so far."""
    found: list[Record] | None = getattr(connection.state, STATE_KEY, None)
    if found is None:
        found = []
        setattr(connection.state, STATE_KEY, found)
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


async def check(connection: HTTPConnection, policy: str | Policy, key: str) -> Decision | None:
    """Count this request for `key` under `policy`; raise `RateLimitExceeded` when over.

    Returns None when rate limiting is switched off.
    """
    services = services_of(connection.app)
    if not services.settings.rate_limit_enabled:
        return None
    limiter = services.limiter
    if isinstance(policy, str):
        policy = limiter.policies[policy]
    decision = await limiter.hit(policy, key)
    recorded = records(connection)
    recorded.append((policy, decision))
    if not decision.allowed:
        raise RateLimitExceeded(
            f"Quota of {policy.limit} requests per {policy.window_s} s used up "
            f"(policy {policy.name}); retry in {decision.retry_after_s} s",
            headers=rate_limit_headers(recorded),
            extra={"policy": policy.name, "retry_after": decision.retry_after_s},
        )
    return decision


def device_key(device_id: str) -> str:
    """The counter of one device."""
    return f"device:{device_id}"


async def check_device(
    connection: HTTPConnection, device_id: str, *, limit_per_minute: int | None = None
) -> Decision | None:
    """The device ingest limit, with a product's `ingest_limit_per_minute` when it sets one."""
    policy = services_of(connection.app).limiter.policies[policies.DEVICE]
    if limit_per_minute is not None:
        policy = dataclasses.replace(
            policy, limit=limit_per_minute, window_ms=DEVICE_OVERRIDE_WINDOW_MS
        )
    return await check(connection, policy, device_key(device_id))


def limits_itself(endpoint: F) -> F:
    """Mark a route that applies the device limit itself (with `check_device`).

    For device callers the router-wide check is skipped on such a route, so a request is still
    counted once, under the product's override when there is one.
    """
    setattr(endpoint, SELF_LIMITED, True)
    return endpoint


def is_self_limited(connection: HTTPConnection) -> bool:
    """True on routes marked with `limits_itself`."""
    return bool(getattr(connection.scope.get("endpoint"), SELF_LIMITED, False))
