"""The shared asyncio Redis client; every call has a short timeout."""

from __future__ import annotations

from redis.asyncio import Redis

from app.core.config import Settings


def create_redis(settings: Settings) -> Redis:
    """A redis-py asyncio client whose calls give up quickly instead of hanging."""
    return Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        health_check_interval=30,
        decode_responses=False,
    )


async def ping(redis: Redis) -> None:
    """Raise unless Redis answers a ping."""
    await redis.ping()
