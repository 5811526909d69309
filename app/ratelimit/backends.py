"""Where the counters live: Redis (redis-py asyncio) or Upstash (REST); the same Lua script.

Each backend runs the script with EVALSHA and falls back to EVAL when the server does not
know it yet (after a restart or a flush), so a check is one round trip in the steady state.
Every call has a deadline: neither client has a useful default timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any, Protocol

import httpx
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError
from upstash_redis.asyncio import Redis as UpstashRedis

from app.core.config import Settings
from app.ratelimit.algorithm import SLIDING_WINDOW_LUA

SCRIPT_SHA = hashlib.sha1(SLIDING_WINDOW_LUA.encode()).hexdigest()  # noqa: S324 - Redis' own id


class Backend(Protocol):
    """Runs the sliding-window script; raises on any failure (the caller falls back)."""

    name: str

    async def run(self, keys: Sequence[str], args: Sequence[int]) -> list[int]:
        """Run the script once and return its integer results."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def _ints(result: Any) -> list[int]:
    if not isinstance(result, list) or len(result) != 4:
        raise RuntimeError(f"unexpected rate-limit script result: {result!r}")
    return [int(value) for value in result]


class RedisBackend:
    """redis-py asyncio on `redis://` or `rediss://`, with short connect and socket timeouts."""

    name = "redis"

    def __init__(self, url: str, *, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.client = Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            # No retries: a failed check is decided locally at once instead of waiting again.
            retry=Retry(NoBackoff(), 0),
            decode_responses=False,
        )

    async def run(self, keys: Sequence[str], args: Sequence[int]) -> list[int]:
        """EVALSHA, or EVAL when the script is not cached on the server."""
        async with asyncio.timeout(self.timeout_s * 2):
            try:
                result = await self.client.evalsha(SCRIPT_SHA, len(keys), *keys, *args)
            except NoScriptError:
                result = await self.client.eval(SLIDING_WINDOW_LUA, len(keys), *keys, *args)
        return _ints(result)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()


class UpstashBackend:
    """upstash-redis over its REST API (URL + token), with a request timeout and no retries."""

    name = "upstash"

    def __init__(self, url: str, token: str, *, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.client = UpstashRedis(
            url,
            token,
            # The default retries once after 3 s; a rate-limit check cannot wait that long.
            rest_retries=0,
            rest_retry_interval=0,
            allow_telemetry=False,
        )
        # The SDK builds its httpx client with timeout=None and has no option for it; give the
        # transport a deadline too, so an abandoned request does not hold a socket forever.
        http = getattr(getattr(self.client, "_http", None), "_client", None)
        if isinstance(http, httpx.AsyncClient):
            http.timeout = httpx.Timeout(timeout_s)

    async def run(self, keys: Sequence[str], args: Sequence[int]) -> list[int]:
        """EVALSHA, or EVAL when the script is not cached on the server."""
        str_args = [str(arg) for arg in args]
        async with asyncio.timeout(self.timeout_s * 2):
            try:
                result = await self.client.evalsha(SCRIPT_SHA, list(keys), str_args)
            except Exception as exc:
                if "NOSCRIPT" not in str(exc):
                    raise
                result = await self.client.eval(SLIDING_WINDOW_LUA, list(keys), str_args)
        return _ints(result)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.client.close()


def create_backend(settings: Settings) -> Backend:
    """Upstash when its REST URL is configured, otherwise the Redis at `REDIS_URL`."""
    if settings.upstash_redis_rest_url:
        token = settings.upstash_redis_rest_token
        assert token is not None  # the settings validator requires it with the URL
        return UpstashBackend(
            settings.upstash_redis_rest_url,
            token.get_secret_value(),
            timeout_s=settings.rate_limit_timeout_s,
        )
    return RedisBackend(settings.redis_url, timeout_s=settings.rate_limit_timeout_s)
