"""The sliding-window rule: Python against brute force, and the Lua script against Python."""

from __future__ import annotations

import random
import uuid

import redis

from app.ratelimit.algorithm import SLIDING_WINDOW_LUA, decide, slot_keys


def brute_force_wait(prev: int, cur: int, limit: int, window: int, now: int) -> int:
    """The first millisecond at which a request would pass, found by trying each one."""
    slot = now // window
    for wait in range(0, 3 * window):
        t = now + wait
        if t // window == slot:
            p, c = prev, cur
        elif t // window == slot + 1:
            p, c = cur, 0
        else:
            p, c = 0, 0
        if decide(prev=p, cur=c, limit=limit, window_ms=window, now_ms=t)[0]:
            return wait
    raise AssertionError("never admitted")


class TestRetryAfterFormula:
    def test_matches_brute_force(self) -> None:
        rng = random.Random(5)
        checked = 0
        while checked < 300:
            window = rng.choice([50, 97, 200])
            limit = rng.randint(1, 12)
            prev = rng.randint(0, 15)
            cur = rng.randint(0, limit)
            now = 10_000 * window + rng.randrange(window)
            allowed, _, _, _, retry = decide(
                prev=prev, cur=cur, limit=limit, window_ms=window, now_ms=now
            )
            if allowed:
                continue
            assert retry == brute_force_wait(prev, cur, limit, window, now), (
                prev,
                cur,
                limit,
                window,
                now,
            )
            checked += 1

    def test_limit_of_one_admits(self) -> None:
        assert decide(prev=0, cur=0, limit=1, window_ms=1000, now_ms=5)[0]


class TestLuaMatchesPython:
    def test_same_answers(self, redis_sync: redis.Redis) -> None:
        script = redis_sync.register_script(SLIDING_WINDOW_LUA)
        rng = random.Random(7)
        for _ in range(200):
            window = rng.choice([1000, 60_000, 7_200_000])
            limit = rng.randint(1, 20)
            prev = rng.randint(0, 25)
            cur = rng.randint(0, 25)
            now = 1_700_000_000_000 + rng.randrange(10**9)
            keys = slot_keys(uuid.uuid4().hex, "p", "k", window_ms=window, now_ms=now)
            if cur:
                redis_sync.set(keys[0], cur, px=60_000)
            if prev:
                redis_sync.set(keys[1], prev, px=60_000)
            allowed, new_cur, remaining, reset, retry = decide(
                prev=prev, cur=cur, limit=limit, window_ms=window, now_ms=now
            )
            got = script(keys=keys, args=[limit, window, now])
            assert got == [int(allowed), remaining, reset, retry]
            assert int(redis_sync.get(keys[0]) or 0) == new_cur
            redis_sync.delete(*keys)
