"""The application factory: the lifespan builds one `Services`; middleware, handlers, routers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI, routing
from fastapi.routing import APIRoute

from app import __version__, schema
from app.alerts import service as alarms_service
from app.alerts.cache import RuleCache
from app.alerts.evaluator import AlertEvaluator
from app.alerts.notifier import Notifier
from app.api import api_router, socket_router
from app.auth.failures import AuthFailureGate
from app.auth.firebase import FirebaseAuth
from app.auth.key_cache import DeviceKeyCache
from app.auth.principal_cache import PrincipalCache
from app.auth.seen import SeenRecorder
from app.catalog.permissions.access_cache import AccessCache
from app.commands import events as command_events
from app.commands.waker import CommandWaker
from app.console.router import router as console_router
from app.core import db, openapi, redis
from app.core.config import Settings, get_settings
from app.core.errors import install_error_handlers
from app.core.health import router as health_router
from app.core.logging import configure_logging
from app.core.middleware import RequestMiddleware
from app.core.observability import init_sentry
from app.core.prometheus import router as metrics_router
from app.core.services import SensorhubApp, Services, services_of
from app.core.startup import wait_for_dependencies
from app.live.hub import LiveHub
from app.live.publish import ReadingsFanout
from app.migrations import runner as migrations
from app.ratelimit.middleware import recorded_headers
from app.ratelimit.service import create_limiter
from app.readings.batcher import IngestBatcher
from app.readings.context import DeviceContextCache
from app.readings.fastpath import IngestRoute
from app.readings.latest_cache import LatestValues
from app.readings.latest_fastpath import LatestRoute
from app.readings.router import latest_readings, post_readings
from app.stats.counters import ReadingCounters
from app.stats.devices import DeviceCounters
from app.users import onboarding
from app.worker import stats as worker_stats
from app.worker.factory import create_celery

logger = logging.getLogger(__name__)

__all__ = ["create_app", "services_of"]

DESCRIPTION = """
Sensorhub stores devices, their readings, folders, products and who may see them.

* **Users** sign in with Firebase and call the API with their Firebase ID token or with the
  API's own session tokens.
* **Devices** post readings with their own key (`X-Device-Key`).
* Errors are `application/problem+json` (RFC 9457).
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Connect (with retries), create the schema, build `Services`; close all on shutdown."""
    assert isinstance(app, SensorhubApp)
    settings = app.settings
    async with AsyncExitStack() as stack:
        mongo_client = db.create_client(settings)
        stack.callback(mongo_client.close)
        redis_client = redis.create_redis(settings)
        stack.push_async_callback(redis_client.aclose)
        limiter = create_limiter(settings)
        stack.push_async_callback(limiter.aclose)
        device_keys = DeviceKeyCache(ttl_s=settings.device_key_cache_s, publisher=redis_client)
        revocations = asyncio.create_task(
            device_keys.follow(settings.redis_url, timeout_s=settings.redis_timeout_s),
            name="device-key-revocations",
        )
        stack.push_async_callback(_cancel, revocations)
        principals = PrincipalCache(ttl_s=settings.auth_cache_s, publisher=redis_client)
        access = AccessCache(ttl_s=settings.auth_cache_s, publisher=redis_client)
        device_contexts = DeviceContextCache(
            ttl_s=settings.readings_context_cache_s,
            max_entries=settings.readings_context_cache_max,
            publisher=redis_client,
        )
        for cache, name in (
            (principals, "principal-changes"),
            (access, "access-changes"),
            (device_contexts, "device-context-changes"),
        ):
            follower = asyncio.create_task(
                cache.follow(settings.redis_url, timeout_s=settings.redis_timeout_s), name=name
            )
            stack.push_async_callback(_cancel, follower)
        seen = SeenRecorder(interval_s=settings.user_seen_interval_s)
        stack.push_async_callback(seen.drain)
        command_waker = CommandWaker(max_waiters=settings.commands_max_waiters)
        wake_ups = asyncio.create_task(
            command_waker.follow(settings.redis_url, timeout_s=settings.redis_timeout_s),
            name="command-wake-ups",
        )
        stack.push_async_callback(_cancel, wake_ups)
        alert_rules = RuleCache(
            ttl_s=settings.alert_rule_cache_s,
            rate_points_max=settings.alert_rate_points_max,
            publisher=redis_client,
        )
        rule_changes = asyncio.create_task(
            alert_rules.follow(settings.redis_url, timeout_s=settings.redis_timeout_s),
            name="alert-rule-changes",
        )
        stack.push_async_callback(_cancel, rule_changes)
        await wait_for_dependencies(settings, mongo_client=mongo_client, redis_client=redis_client)
        engine = db.create_engine(mongo_client, settings)
        await migrations.ensure_current(engine, settings)
        await db.check_timeseries(db.database(engine), schema.readings_spec(settings))
        celery = create_celery(settings)
        alert_evaluator = AlertEvaluator(
            engine,
            rules=alert_rules,
            notifier=Notifier(engine, celery, redis_client),
            state_flush_s=settings.alert_state_flush_s,
            state_cache_max=settings.alert_state_cache_max,
        )
        alert_evaluator.start()
        # Stopped after the batcher (callbacks run last-in first-out): the last flushes are
        # evaluated, then the evaluator writes its state.
        stack.push_async_callback(alert_evaluator.stop)
        live = LiveHub(settings, engine=engine, redis=redis_client)
        live.start()
        # Runs after the batcher's last flush (callbacks run in reverse): what that flush
        # published reaches the sockets, then they close with 1001.
        stack.push_async_callback(live.close)
        fanout = ReadingsFanout(redis_client, buffer_len=settings.live_sse_buffer)
        latest_values = LatestValues(redis_client, ttl_s=settings.latest_cache_s)
        device_counters = DeviceCounters(
            engine, redis_client, touch_every_s=settings.presence_throttle_s
        )
        batcher = IngestBatcher.from_settings(
            engine,
            settings,
            cache=device_contexts,
            listeners=[
                alert_evaluator,
                fanout,
                ReadingCounters(engine, redis_client),
                device_counters,
            ],
            latest_values=latest_values,
        )
        batcher.start()
        # Registered last, so it runs first: acknowledged readings are written before the
        # clients close.
        stack.push_async_callback(batcher.stop)

        async def refresh_metrics() -> None:
            await worker_stats.refresh(engine, redis_client, timeout=settings.ready_timeout_s)
            await command_events.refresh_metrics(redis_client, timeout=settings.ready_timeout_s)

        app.services = Services(
            settings=settings,
            mongo_client=mongo_client,
            engine=engine,
            redis=redis_client,
            celery=celery,
            firebase=FirebaseAuth(settings),
            device_keys=device_keys,
            principals=principals,
            access=access,
            seen=seen,
            auth_failures=AuthFailureGate(),
            limiter=limiter,
            device_contexts=device_contexts,
            batcher=batcher,
            latest_values=latest_values,
            command_waker=command_waker,
            alert_rules=alert_rules,
            alert_evaluator=alert_evaluator,
            live=live,
            on_sign_in=onboarding.welcome,
            alarm_counter=alarms_service.active_by_severity,
            device_counters=device_counters,
            on_devices_changed=device_counters.changed,
            refresh_metrics=refresh_metrics,
        )
        if settings.gc_tuning:
            stack.callback(_untune_gc, gc.get_threshold())
            _tune_gc()
        # "uvloop" when uvicorn found it (the lock has it, with httptools): worth a glance.
        event_loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
        logger.info(
            "started", extra={"environment": settings.environment, "event_loop": event_loop}
        )
        try:
            yield
        finally:
            app.services = None


# Young collections every 10,000 net allocations instead of 700: a request allocates a few
# hundred objects, almost none of them in cycles.
GC_THRESHOLDS = (10_000, 50, 100)


def _tune_gc() -> None:
    """Collect once, then freeze what start-up made: it lives as long as the process, and
    every full collection would otherwise walk it (the p99 of small requests)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _untune_gc(thresholds: tuple[int, int, int]) -> None:
    """Undo `_tune_gc` (tests start and stop many apps in one process)."""
    gc.unfreeze()
    gc.set_threshold(*thresholds)


async def drain(app: SensorhubApp) -> None:
    """Before the server closes connections: the last flush, then every socket closes 1001.

    uvicorn closes open WebSockets with 1012 before the lifespan's shutdown runs; `python -m
    app` calls this first (once HTTP requests in flight have been answered), so clients get
    the readings that were acknowledged and then a 1001. The lifespan's own shutdown repeats
    both steps harmlessly.
    """
    services = app.services
    if services is None:
        return
    await services.batcher.stop()
    await services.live.close_sockets()


def open_streams(app: SensorhubApp) -> int:
    """SSE streams open in this process (HTTP requests that only `drain` ends)."""
    services = app.services
    return 0 if services is None else services.live.streams


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _route_of(app: FastAPI, endpoint: Callable[..., Any]) -> APIRoute:
    """The route serving `endpoint`."""
    return next(
        c.original_route
        for c in routing.iter_route_contexts(app.routes)
        if isinstance(c.original_route, APIRoute) and c.original_route.endpoint is endpoint
    )


def create_app(settings: Settings | None = None) -> SensorhubApp:
    """Build the ASGI app for the given settings (the environment's when None)."""
    settings = settings or get_settings()
    configure_logging(level=settings.log_level, json=settings.log_json)
    init_sentry(settings, component="api")
    app = SensorhubApp(
        title=settings.app_name,
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        settings=settings,
        generate_unique_id_function=openapi.operation_id,
        openapi_tags=openapi.TAGS,
    )
    install_error_handlers(app)
    app.include_router(health_router)
    app.include_router(metrics_router)
    app.include_router(api_router)
    app.include_router(socket_router)
    app.include_router(console_router)
    app.add_middleware(
        RequestMiddleware,
        max_body_bytes=settings.max_body_bytes,
        header_hooks=[recorded_headers],
        access_log_sample_rate=settings.access_log_sample_rate,
        # Single-reading ingest and latest values skip the router (same steps, far less CPU;
        # see the modules).
        fast_routes=[
            IngestRoute(_route_of(app, post_readings), app.exception_handlers),
            LatestRoute(_route_of(app, latest_readings), app.exception_handlers),
        ],
    )
    return app
