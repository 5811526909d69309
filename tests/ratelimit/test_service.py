"""The limiter against the real redis-server, through redis-py and through the Upstash REST path."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import redis

from app.auth import quotas
from app.auth.principal import Principal, PrincipalKind
from app.core.config import Settings
from app.ratelimit import policies
from app.ratelimit.policies import Policy, policies_from
from app.ratelimit.service import RateLimiter

# Deterministic tests pass the clock in; the window is a minute so that keys, which expire in
# real time, outlive the test.
W = 60_000
SLOT_START = 29_000_000 * W  # an instant on a window boundary (slot n begins here)


def per_min(limit: int) -> Policy:
    return Policy("user", limit, 60_000)


async def fire(limiter: RateLimiter, policy: Policy, key: str, n: int, now_ms: int) -> int:
    """Send n checks at one instant; how many were admitted."""
    admitted = 0
    for _ in range(n):
        admitted += (await limiter.hit(policy, key, now_ms=now_ms)).allowed
    return admitted


class TestAtomicity:
    async def test_fifty_clients_get_exactly_the_limit(
        self, make_limiter: Callable[[], RateLimiter]
    ) -> None:
        clients = [make_limiter() for _ in range(50)]
        policy = per_min(100)
        now = SLOT_START + 30_000

        async def client(limiter: RateLimiter) -> list[bool]:
            return [(await limiter.hit(policy, "k", now_ms=now)).allowed for _ in range(6)]

        results = await asyncio.gather(*(client(c) for c in clients))
        assert sum(sum(r) for r in results) == 100
        assert len([ok for r in results for ok in r]) == 300

    async def test_concurrent_checks_of_one_process_get_exactly_the_limit(
        self, limiter: RateLimiter, redis_sync: redis.Redis
    ) -> None:
        # One limiter, so the checks share pipelines (one per event-loop turn): twice the
        # limit per key, all at once, interleaved over three keys.
        policy = per_min(40)
        now = SLOT_START + 30_000
        results = await asyncio.gather(
            *(limiter.hit(policy, f"k{i % 3}", now_ms=now) for i in range(240))
        )
        assert [sum(d.allowed for d in results[i::3]) for i in range(3)] == [40, 40, 40]
        # ... also when the server has forgotten the script (after a restart or a flush).
        redis_sync.script_flush()
        again = await asyncio.gather(*(limiter.hit(policy, "fresh", now_ms=now) for _ in range(60)))
        assert sum(d.allowed for d in again) == 40
        assert sorted(d.remaining for d in again if d.allowed) == list(range(40))


class TestSlidingWindow:
    async def test_admission_resumes_in_proportion_to_elapsed_time(
        self, limiter: RateLimiter
    ) -> None:
        policy = Policy("user", 10, W)
        assert await fire(limiter, policy, "k", 15, SLOT_START + W // 2) == 10
        assert await fire(limiter, policy, "k", 5, SLOT_START + W) == 0
        admitted = 0
        for fraction in (0.1, 0.3, 0.5, 0.8, 0.99):
            admitted += await fire(limiter, policy, "k", 20, SLOT_START + W + int(W * fraction))
            # The previous window still counts with weight (1 - fraction).
            assert admitted == int(10 * fraction + 1e-9)

    async def test_not_a_fixed_window(self, limiter: RateLimiter) -> None:
        policy = Policy("user", 10, W)
        assert await fire(limiter, policy, "k", 10, SLOT_START + W - 10) == 10
        # A fixed window would admit 10 more right after the boundary.
        assert await fire(limiter, policy, "k", 10, SLOT_START + W + 10) == 0

    async def test_real_clock_slides(self, limiter: RateLimiter) -> None:
        policy = Policy("user", 3, 500)
        decisions = [await limiter.hit(policy, "k") for _ in range(4)]
        assert [d.allowed for d in decisions] == [True, True, True, False]
        # Refused hits are not counted, so polling does not push the window on.
        deadline = time.monotonic() + decisions[-1].retry_after_ms / 1000 + 1
        while not (await limiter.hit(policy, "k")).allowed:
            assert time.monotonic() < deadline, "still refused well after Retry-After"
            await asyncio.sleep(0.05)


class TestLimitOfOne:
    async def test_admits_one_then_refuses(self, limiter: RateLimiter) -> None:
        policy = Policy("product_create", 1, 7_200_000)
        first = await limiter.hit(policy, "u", now_ms=SLOT_START + 5)
        second = await limiter.hit(policy, "u", now_ms=SLOT_START + 6)
        assert (first.allowed, first.remaining) == (True, 0)
        assert not second.allowed
        assert second.retry_after_ms > 0

    async def test_admits_again_after_a_full_window(self, limiter: RateLimiter) -> None:
        policy = Policy("product_create", 1, W)
        assert await fire(limiter, policy, "u", 2, SLOT_START + 200) == 1
        assert await fire(limiter, policy, "u", 2, SLOT_START + W + 200) == 0
        assert await fire(limiter, policy, "u", 2, SLOT_START + 2 * W - 1) == 0
        assert await fire(limiter, policy, "u", 2, SLOT_START + 2 * W) == 1


class TestKeys:
    async def test_every_key_expires(self, limiter: RateLimiter, redis_sync: redis.Redis) -> None:
        policy = Policy("user", 5, 60_000)
        await fire(limiter, policy, "k", 3, int(time.time() * 1000))
        keys = redis_sync.keys(f"{limiter.prefix}:*")
        assert len(keys) == 1
        ttl = redis_sync.pttl(keys[0])
        assert 0 < ttl <= 2 * 60_000 + 1000

    async def test_two_keys_per_identity_at_most(
        self, limiter: RateLimiter, redis_sync: redis.Redis
    ) -> None:
        policy = Policy("user", 5, 100)
        for _ in range(8):
            await fire(limiter, policy, "k", 3, int(time.time() * 1000))
            await asyncio.sleep(0.06)
        ttls = [redis_sync.pttl(k) for k in redis_sync.keys(f"{limiter.prefix}:*")]
        live = [ttl for ttl in ttls if ttl != -2]  # -2: expired between KEYS and PTTL
        assert 1 <= len(live) <= 3  # current, previous, and one at most about to expire
        # Every key expires (-1 would be a key without a TTL); 0 is one in its last millisecond.
        assert all(ttl >= 0 for ttl in live)


class TestRetryAfter:
    async def test_is_the_true_wait(self, limiter: RateLimiter) -> None:
        policy = Policy("user", 10, W)
        await fire(limiter, policy, "k", 10, SLOT_START + 30_000)
        refused = await limiter.hit(policy, "k", now_ms=SLOT_START + 36_000)
        # Not the window's end (24 s away): 10% into the next window the weight allows one.
        assert refused.retry_after_ms == 30_000
        assert refused.retry_after_s == 30
        assert not (await limiter.hit(policy, "k", now_ms=SLOT_START + 65_999)).allowed
        assert (await limiter.hit(policy, "k", now_ms=SLOT_START + 66_000)).allowed

    async def test_can_be_shorter_than_the_window_end(self, limiter: RateLimiter) -> None:
        policy = Policy("user", 10, W)
        await fire(limiter, policy, "k", 10, SLOT_START + 54_000)
        refused = await limiter.hit(policy, "k", now_ms=SLOT_START + W + 3_000)
        # The previous window's weight falls below 9/10 three seconds later.
        assert refused.retry_after_ms == 3_000
        assert not (await limiter.hit(policy, "k", now_ms=SLOT_START + W + 5_999)).allowed
        assert (await limiter.hit(policy, "k", now_ms=SLOT_START + W + 6_000)).allowed


class TestPolicies:
    async def test_admin_and_user_quotas_differ(
        self, limiter: RateLimiter, make_settings: Callable[..., Settings]
    ) -> None:
        settings = make_settings(rate_limit_user_limit=3, rate_limit_admin_limit=7)
        named = policies_from(settings)
        user = Principal(kind=PrincipalKind.USER, uid="u1")
        admin = Principal(kind=PrincipalKind.USER, uid="a1", roles=frozenset({"admin"}))
        now = SLOT_START + 1000
        admitted: dict[str, int] = {}
        for who in (user, admin):
            name = quotas.policy_for(who)
            assert name is not None
            admitted[name] = await fire(
                limiter, named[name], quotas.identity_key(who, "198.51.100.1"), 20, now
            )
        assert admitted == {"user": 3, "admin": 7}

    async def test_product_creation_one_per_window(
        self, limiter: RateLimiter, make_settings: Callable[..., Settings]
    ) -> None:
        named = policies_from(make_settings())
        policy = named[policies.PRODUCT_CREATE]
        assert (policy.limit, policy.window_ms, policy.admin_exempt) == (1, 7_200_000, True)
        assert await fire(limiter, policy, "user:u1", 3, SLOT_START) == 1
        assert await fire(limiter, policy, "user:u1", 3, SLOT_START + 3_600_000) == 0
        assert await fire(limiter, policy, "user:u2", 3, SLOT_START + 3_600_000) == 1

    def test_master_is_exempt(self) -> None:
        master = Principal(kind=PrincipalKind.MASTER, uid="master")
        assert quotas.policy_for(master) is None

    def test_devices_are_limited_per_device(self) -> None:
        device = Principal(kind=PrincipalKind.DEVICE, uid="d1", device_id="d1")
        assert quotas.policy_for(device) == policies.DEVICE
        assert quotas.identity_key(device, "198.51.100.1") == "device:d1"
        assert quotas.identity_key(None, "198.51.100.1") == "ip:198.51.100.1"
