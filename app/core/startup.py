"""Wait for MongoDB and Redis at start-up, then fail with one clear line."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from redis.asyncio import Redis
from tenacity import (
    AsyncRetrying,
    RetryError,
    before_sleep_log,
    stop_after_attempt,
    wait_exponential,
)

from app.core import db, redis
from app.core.config import Settings

logger = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """A dependency never answered; the message is one line meant for an operator."""


def redacted_endpoint(url: str) -> str:
    """Host and port of a URL without user, password or query (safe to print)."""
    parts = urlsplit(url)
    host = parts.hostname or parts.path or "?"
    return f"{parts.scheme}://{host}:{parts.port}" if parts.port else f"{parts.scheme}://{host}"


async def wait_for(
    name: str,
    check: Callable[[], Awaitable[object]],
    *,
    endpoint: str,
    settings: Settings,
) -> None:
    """Retry `check` with exponential backoff; raise StartupError after the last attempt."""
    retrying = AsyncRetrying(
        stop=stop_after_attempt(settings.startup_retry_attempts),
        wait=wait_exponential(multiplier=0.2, max=settings.startup_retry_max_wait_s),
        before_sleep=before_sleep_log(logger, logging.WARNING, exc_info=False),
    )
    try:
        async for attempt in retrying:
            with attempt:
                await check()
    except RetryError as exc:
        cause = exc.last_attempt.exception()
        reason = type(cause).__name__ if cause else "unknown error"
        raise StartupError(
            f"{name} at {endpoint} did not answer after "
            f"{settings.startup_retry_attempts} attempts ({reason})"
        ) from None


async def wait_for_dependencies(
    settings: Settings, *, mongo_client: db.MongoClient, redis_client: Redis
) -> None:
    """Wait for MongoDB, then Redis; raise StartupError naming the one that never answered."""
    await wait_for(
        "MongoDB",
        lambda: db.ping(mongo_client, timeout_ms=settings.mongodb_timeout_ms),
        endpoint=redacted_endpoint(settings.mongodb_url),
        settings=settings,
    )
    await wait_for(
        "Redis",
        lambda: redis.ping(redis_client),
        endpoint=redacted_endpoint(settings.redis_url),
        settings=settings,
    )
