"""`python -m app`: check settings and dependencies, then serve with uvicorn.

Failures are one line on stderr and a non-zero exit, never a traceback wall.
"""

from __future__ import annotations

import asyncio
import sys

import uvicorn
from pydantic import ValidationError

from app.core import db, redis
from app.core.config import Settings, get_settings
from app.core.startup import StartupError, wait_for_dependencies


def settings_error_line(exc: ValidationError) -> str:
    """One line naming each bad setting and why, without echoing its value."""
    parts = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]).upper() or "settings"
        parts.append(f"{name}: {err['msg']}")
    return "configuration error: " + "; ".join(parts)


async def check_dependencies(settings: Settings) -> None:
    """Wait for MongoDB and Redis like the lifespan does, then close the probes."""
    mongo_client = db.create_client(settings)
    redis_client = redis.create_redis(settings)
    try:
        await wait_for_dependencies(settings, mongo_client=mongo_client, redis_client=redis_client)
    finally:
        await redis_client.aclose()
        mongo_client.close()


def main() -> None:
    """Entry point of `python -m app` and the `sensorhub` script."""
    try:
        settings = get_settings()
    except ValidationError as exc:
        sys.exit(settings_error_line(exc))
    try:
        asyncio.run(check_dependencies(settings))
    except StartupError as exc:
        sys.exit(f"startup failed: {exc}")
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        proxy_headers=False,
        log_config=None,
        # Server pings keep sockets alive through proxies and find dead clients.
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_interval_s,
    )


if __name__ == "__main__":
    main()
