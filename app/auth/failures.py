"""Failed authentications count against the client address (policy `auth_failures`).

Checking a bad credential costs the server a database read (device keys) or a token
verification (Firebase), so a flood of random keys or tokens must end in 429, not in 401
forever. Each failure is counted in the shared limiter under the client's address; once over
the limit, this process also remembers the address until its `Retry-After`, so further
requests from it are refused before any lookup (a cache: Redis stays the authority).
"""

from __future__ import annotations

import time

from starlette.requests import HTTPConnection

from app.ratelimit import dependencies as ratelimit
from app.ratelimit import policies
from app.ratelimit.exceptions import RateLimitExceeded


class AuthFailureGate:
    """Counts failed authentications per address and turns away addresses over the limit."""

    def __init__(self, *, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._blocked: dict[str, float] = {}

    def check(self, address: str) -> None:
        """Refuse (429) an address this process saw go over the limit, until it may retry."""
        until = self._blocked.get(address)
        if until is None:
            return
        wait = until - time.monotonic()
        if wait <= 0:
            self._blocked.pop(address, None)
            return
        seconds = max(1, round(wait))
        raise RateLimitExceeded(
            f"Too many failed authentications from this address; retry in {seconds} s",
            headers={"Retry-After": str(seconds)},
            extra={"policy": policies.AUTH_FAILURES, "retry_after": seconds},
        )

    async def record_failure(self, connection: HTTPConnection, address: str) -> None:
        """Count one failure; raise 429 (and remember the address) once over the limit."""
        try:
            await ratelimit.check(connection, policies.AUTH_FAILURES, f"ip:{address}")
        except RateLimitExceeded as exc:
            if len(self._blocked) >= self.max_entries:
                self._blocked.clear()
            self._blocked[address] = time.monotonic() + float(exc.extra.get("retry_after", 1))
            raise
