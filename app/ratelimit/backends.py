"""Where the counters live: Redis (redis-py asyncio) or Upstash (REST); the same Lua script.

Each backend runs the script with EVALSHA and falls back to EVAL when the server does not
know it yet (after a restart or a flush), so a check is one round trip in the steady state;
the Redis backend sends the checks of one event-loop turn in one pipeline.
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


_Check = tuple[Sequence[str], Sequence[int], "asyncio.Future[Any]"]


class RedisBackend:
    """redis-py asyncio on `redis://` or `rediss://`, with short connect and socket timeouts.

    The checks of concurrent requests are sent together: every check made during one turn of
    the event loop joins one pipeline (one write, one read, one pooled connection), sent on
    the next turn. Each check is still its own script call, atomic on the server and run in
    order, so counts stay exact; only the client's per-call work is shared. A check alone in
    its turn waits for nothing but that turn.
    """

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
        self._pending: list[_Check] = []
        self._sends: set[asyncio.Task[None]] = set()

    async def run(self, keys: Sequence[str], args: Sequence[int]) -> list[int]:
        """EVALSHA, or EVAL when the script is not cached on the server (in a pipeline)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._send_pending)
        self._pending.append((keys, args, future))
        async with asyncio.timeout(self.timeout_s * 2):
            result = await future
        return _ints(result)

    def _send_pending(self) -> None:
        checks, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._send(checks))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _send(self, checks: list[_Check]) -> None:
        try:
            async with asyncio.timeout(self.timeout_s * 2):
                results = await self._pipeline(checks, sha=True)
                missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
                if missing:  # after a restart or a flush: none of these ran, run them now
                    again = await self._pipeline([checks[i] for i in missing], sha=False)
                    for i, result in zip(missing, again, strict=True):
                        results[i] = result
        except BaseException as exc:  # the callers decide locally on any failure
            error = exc if isinstance(exc, Exception) else ConnectionError(repr(exc))
            for _, _, future in checks:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, future), result in zip(checks, results, strict=True):
            if future.done():  # its caller gave up waiting
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _pipeline(self, checks: list[_Check], *, sha: bool) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for keys, args, _ in checks:
            if sha:
                pipe.evalsha(SCRIPT_SHA, len(keys), *keys, *args)
            else:
                pipe.eval(SLIDING_WINDOW_LUA, len(keys), *keys, *args)
        return list(await pipe.execute(raise_on_error=False))

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._sends:
            await asyncio.gather(*self._sends, return_exceptions=True)
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
