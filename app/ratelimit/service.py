"""The rate limiter: one script call per check on the shared store, local when it is down."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from app.core.config import Settings
from app.core.metrics import RATE_LIMIT_FALLBACKS, RATE_LIMIT_REJECTIONS
from app.ratelimit.algorithm import Decision, slot_keys
from app.ratelimit.backends import Backend, create_backend
from app.ratelimit.fallback import CircuitBreaker, LocalLimiter
from app.ratelimit.policies import Policy, policies_from

logger = logging.getLogger(__name__)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class RateLimiter:
    """Checks requests against policies; shared counters in Redis, local ones during outages."""

    def __init__(
        self,
        backend: Backend,
        *,
        prefix: str = "rl",
        breaker: CircuitBreaker | None = None,
        local: LocalLimiter | None = None,
        clock_ms: Callable[[], int] = _now_ms,
        named: dict[str, Policy] | None = None,
    ) -> None:
        self.backend = backend
        self.policies = named or {}
        self.prefix = prefix
        self.breaker = breaker or CircuitBreaker(failure_threshold=3, cooldown_s=5.0)
        self.local = local or LocalLimiter()
        self.clock_ms = clock_ms

    async def hit(self, policy: Policy, key: str, *, now_ms: int | None = None) -> Decision:
        """Count one request of `key` under `policy`; the decision says whether it may pass."""
        now = self.clock_ms() if now_ms is None else now_ms
        decision = await self._shared(policy, key, now) if self.breaker.allow() else None
        if decision is None:
            RATE_LIMIT_FALLBACKS.inc()
            decision = self.local.hit(
                f"{policy.name}:{key}", limit=policy.limit, window_ms=policy.window_ms, now_ms=now
            )
        if not decision.allowed:
            RATE_LIMIT_REJECTIONS.labels(policy=policy.name).inc()
        return decision

    async def _shared(self, policy: Policy, key: str, now: int) -> Decision | None:
        keys = slot_keys(self.prefix, policy.name, key, window_ms=policy.window_ms, now_ms=now)
        try:
            allowed, remaining, reset, retry = await self.backend.run(
                keys, [policy.limit, policy.window_ms, now]
            )
        except Exception as exc:  # any failure of the store means "decide locally"
            if self.breaker.record_failure():
                logger.warning(
                    "rate limiter store unavailable; deciding locally until it returns",
                    extra={"backend": self.backend.name, "error": type(exc).__name__},
                )
            return None
        if self.breaker.record_success():
            logger.info("rate limiter store is back", extra={"backend": self.backend.name})
        return Decision(bool(allowed), policy.limit, remaining, reset, retry)

    @property
    def degraded(self) -> bool:
        """True while decisions are being made locally."""
        return not self.breaker.is_closed

    async def aclose(self) -> None:
        """Close the store's connections."""
        await self.backend.aclose()


def create_limiter(settings: Settings) -> RateLimiter:
    """The limiter for the app: Upstash or Redis per settings, with its breaker and fallback."""
    return RateLimiter(
        create_backend(settings),
        prefix=settings.rate_limit_key_prefix,
        breaker=CircuitBreaker(
            failure_threshold=settings.rate_limit_breaker_failures,
            cooldown_s=settings.rate_limit_breaker_cooldown_s,
        ),
        local=LocalLimiter(max_keys=settings.rate_limit_fallback_max_keys),
        named=policies_from(settings),
    )
