"""A Redis lock for tasks that must not run twice at once: SET NX PX with an owner token."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from redis import Redis

LOCK_PREFIX = "sensorhub:lock:"

# Deletes the key only if it still holds our token: a lock that expired and was taken by
# another worker is never released by the first one.
_RELEASE = """
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("del", KEYS[1])
end
return 0
"""


@contextmanager
def redis_lock(redis: Redis, name: str, *, ttl_ms: int) -> Iterator[bool]:
    """Hold `name` for the block if nobody else does; yields False (and holds nothing) if taken.

    `ttl_ms` bounds how long a crashed holder blocks others; set it above the task time limit.
    """
    key = LOCK_PREFIX + name
    token = secrets.token_hex(16)
    acquired = bool(redis.set(key, token, nx=True, px=ttl_ms))
    try:
        yield acquired
    finally:
        if acquired:
            redis.eval(_RELEASE, 1, key, token)
