"""The in-process limiter used while Redis is unreachable, and the circuit breaker around Redis.

The fallback applies the same rule (`algorithm.decide`) to counters held in this process, so
during an outage each API process enforces the policy on its own share of the traffic: the
service keeps answering and a single client still cannot flood one process.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from app.ratelimit.algorithm import Decision, decide


class LocalLimiter:
    """Sliding-window counters in a bounded LRU dict: (slot, previous count, current count)."""

    def __init__(self, *, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._slots: OrderedDict[str, tuple[int, int, int]] = OrderedDict()

    def hit(self, key: str, *, limit: int, window_ms: int, now_ms: int) -> Decision:
        """Count one request for `key` if the policy admits it."""
        slot = now_ms // window_ms
        stored_slot, prev, cur = self._slots.get(key, (slot, 0, 0))
        if stored_slot == slot - 1:
            prev, cur = cur, 0
        elif stored_slot != slot:
            prev, cur = 0, 0
        allowed, cur, remaining, reset, retry = decide(
            prev=prev, cur=cur, limit=limit, window_ms=window_ms, now_ms=now_ms
        )
        self._slots[key] = (slot, prev, cur)
        self._slots.move_to_end(key)
        while len(self._slots) > self.max_keys:
            self._slots.popitem(last=False)
        return Decision(allowed, limit, remaining, reset, retry)


class CircuitBreaker:
    """Closed while Redis answers; open (no calls) for a cool-down after repeated failures.

    After the cool-down one probe call is let through (half-open): success closes the
    breaker, failure opens it for another cool-down.
    """

    def __init__(
        self,
        *,
        failure_threshold: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self.clock = clock  # injected so tests can pass a cool-down without waiting for it
        self.failures = 0
        self.open_until: float | None = None

    @property
    def is_closed(self) -> bool:
        """True when Redis is considered healthy."""
        return self.open_until is None and self.failures == 0

    def allow(self) -> bool:
        """Whether this call may go to Redis now."""
        if self.open_until is None:
            return True
        now = self.clock()
        if now < self.open_until:
            return False
        # One probe per cool-down; a probe that never reports back (cancelled) is replaced.
        self.open_until = now + self.cooldown_s
        return True

    def record_success(self) -> bool:
        """Note a good call; True when this ends an outage."""
        recovered = self.failures > 0 or self.open_until is not None
        self.failures = 0
        self.open_until = None
        return recovered

    def record_failure(self) -> bool:
        """Note a failed call; True when this is the first failure of an outage."""
        first = self.failures == 0 and self.open_until is None
        self.failures += 1
        if self.failures >= self.failure_threshold:
            self.open_until = self.clock() + self.cooldown_s
        return first
