"""The application factory: lifespan, middleware, exception handlers and routers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app import __version__, schema
from app.api import api_router
from app.auth.firebase import FirebaseAuth
from app.auth.key_cache import DeviceKeyCache
from app.core import db, redis
from app.core.config import Settings, get_settings
from app.core.errors import install_error_handlers
from app.core.health import router as health_router
from app.core.logging import configure_logging
from app.core.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from app.core.observability import init_sentry
from app.core.prometheus import PrometheusMiddleware
from app.core.prometheus import router as metrics_router
from app.core.startup import wait_for_dependencies
from app.ratelimit.middleware import RateLimitHeadersMiddleware
from app.ratelimit.service import create_limiter
from app.readings import ingest as readings_ingest
from app.worker.celery_app import create_celery

logger = logging.getLogger(__name__)

DESCRIPTION = """
Sensorhub stores devices, their readings, folders, products and who may see them.

* **Users** sign in with Firebase and call the API with their Firebase ID token or with the
  API's own session tokens.
* **Devices** post readings with their own key (`X-Device-Key`).
* Errors are `application/problem+json` (RFC 9457).
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Connect to MongoDB and Redis (with retries), create the schema, close on shutdown."""
    settings: Settings = app.state.settings
    mongo_client = db.create_client(settings)
    redis_client = redis.create_redis(settings)
    rate_limiter = create_limiter(settings)
    device_keys = DeviceKeyCache(ttl_s=settings.device_key_cache_s, publisher=redis_client)
    app.state.device_keys = device_keys
    revocations = asyncio.create_task(
        device_keys.follow(settings.redis_url, timeout_s=settings.redis_timeout_s),
        name="device-key-revocations",
    )
    try:
        await wait_for_dependencies(settings, mongo_client=mongo_client, redis_client=redis_client)
        engine = db.create_engine(mongo_client, settings)
        await db.ensure_schema(
            engine, models=schema.models(), collections=schema.collections(settings)
        )
        app.state.mongo_client = mongo_client
        app.state.engine = engine
        app.state.redis = redis_client
        app.state.celery = create_celery(settings)
        readings_ingest.start(app.state, engine, settings)
        app.state.firebase = FirebaseAuth(settings)
        app.state.rate_limiter = rate_limiter
        logger.info("started", extra={"environment": settings.environment})
        yield
    finally:
        await readings_ingest.stop(app.state)  # acknowledged readings are written first
        revocations.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await revocations
        await rate_limiter.aclose()
        await redis_client.aclose()
        mongo_client.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app for the given settings (the environment's when None)."""
    settings = settings or get_settings()
    configure_logging(level=settings.log_level, json=settings.log_json)
    init_sentry(settings, component="api")
    app = FastAPI(
        title=settings.app_name,
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(RateLimitHeadersMiddleware)
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware)
    app.add_middleware(PrometheusMiddleware)
    app.include_router(health_router)
    app.include_router(metrics_router)
    app.include_router(api_router)
    return app
