"""The Redis lock: one holder at a time, released only by its owner."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from bson import ObjectId
from redis import Redis

from app.core.config import Settings
from app.worker.locks import LOCK_PREFIX, redis_lock
from tests.fixtures.servers import wait_until


@pytest.fixture
def redis(settings: Settings) -> Iterator[Redis]:
    client = Redis.from_url(settings.redis_url)
    yield client
    client.close()


def gone(redis: Redis, key: str) -> None:
    """Wait until `key` has expired."""
    wait_until(lambda: not redis.exists(key), timeout=5, what=f"{key} to expire")


class TestRedisLock:
    def test_second_holder_is_refused_until_release(self, redis: Redis) -> None:
        name = f"t-{ObjectId()}"
        with redis_lock(redis, name, ttl_ms=5000) as first:
            with redis_lock(redis, name, ttl_ms=5000) as second:
                assert (first, second) == (True, False)
            assert redis.exists(LOCK_PREFIX + name)  # the refused one did not release it
        with redis_lock(redis, name, ttl_ms=5000) as again:
            assert again

    def test_expired_holder_does_not_release_the_next_ones_lock(self, redis: Redis) -> None:
        name = f"t-{ObjectId()}"
        with redis_lock(redis, name, ttl_ms=100) as slow:
            assert slow
            gone(redis, LOCK_PREFIX + name)  # the lock expired while the slow holder worked on
            with redis_lock(redis, name, ttl_ms=5000) as other:
                assert other
                token = redis.get(LOCK_PREFIX + name)
        # `other` released its own lock on exit; `slow` must not have deleted anything else.
        assert token is not None
        assert not redis.exists(LOCK_PREFIX + name)

    def test_slow_holder_exit_leaves_a_newer_lock_in_place(self, redis: Redis) -> None:
        name = f"t-{ObjectId()}"
        key = LOCK_PREFIX + name
        with redis_lock(redis, name, ttl_ms=100) as slow:
            assert slow
            gone(redis, key)
            redis.set(key, b"someone-else", px=5000)
        assert redis.get(key) == b"someone-else"
