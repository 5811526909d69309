"""The clients and long-lived helpers the lifespan makes, in one frozen, typed object.

`app.main` builds one `Services` when the app starts and closes its clients on shutdown;
routes and dependencies reach it through `ServicesDep` (HTTP and WebSocket alike). Nothing
reads `app.state` by string outside `app.main`.

The domain types below are imported for type checking only: at run time core imports no
domain (the layers contract in `.importlinter` checks it), and only `app.main` builds this.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI
from starlette.requests import HTTPConnection

from app.core import openapi
from app.core.errors import DatabaseUnavailable

if TYPE_CHECKING:
    from celery import Celery
    from odmantic import AIOEngine
    from redis.asyncio import Redis

    from app.alerts.cache import RuleCache
    from app.alerts.evaluator import AlertEvaluator
    from app.auth.failures import AuthFailureGate
    from app.auth.firebase import FirebaseAuth
    from app.auth.identities import SignInHook
    from app.auth.key_cache import DeviceKeyCache
    from app.auth.principal_cache import PrincipalCache
    from app.auth.seen import SeenRecorder
    from app.catalog.permissions.access_cache import AccessCache
    from app.commands.waker import CommandWaker
    from app.core.config import Settings
    from app.core.db import MongoClient
    from app.live.hub import LiveHub
    from app.ratelimit.service import RateLimiter
    from app.readings.batcher import IngestBatcher
    from app.readings.context import DeviceContextCache
    from app.readings.latest_cache import LatestValues
    from app.stats.devices import DeviceCounters
    from app.stats.service import AlarmCounter


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    """Everything a request may need besides its own input, made once per process."""

    settings: Settings
    mongo_client: MongoClient
    engine: AIOEngine
    redis: Redis
    celery: Celery
    firebase: FirebaseAuth
    device_keys: DeviceKeyCache
    # Session users, grants and device access paths, forgotten on change over Redis.
    principals: PrincipalCache
    access: AccessCache
    # "Last seen" writes, off the request path.
    seen: SeenRecorder
    auth_failures: AuthFailureGate
    limiter: RateLimiter
    device_contexts: DeviceContextCache
    batcher: IngestBatcher
    # Redis copies of device_latest (GET /readings/latest reads them).
    latest_values: LatestValues
    # Waiting command long-polls of this process, woken over Redis (app/commands/waker.py).
    command_waker: CommandWaker
    # Alert rules per device (cleared on rule changes) and the evaluator fed by the batcher.
    alert_rules: RuleCache
    alert_evaluator: AlertEvaluator
    # Live streams: this process's shared Redis subscription and its sockets.
    live: LiveHub
    # What happens when a person is first seen (welcome email, invites): the users domain's.
    on_sign_in: SignInHook
    # Active alarms by severity for the fleet statistics (the alerts domain's, once wired).
    alarm_counter: AlarmCounter
    # Device counts per scope for the fleet statistics (app/stats/devices.py). The catalog
    # services call `on_devices_changed(device_ids=..., folder_ids=...)` after a device is
    # created, changed or deleted, or a folder is moved or deleted; heartbeats too.
    device_counters: DeviceCounters
    on_devices_changed: Callable[..., Awaitable[None]]
    # Loads figures kept outside this process (outbox sizes, worker outcomes) before a scrape.
    refresh_metrics: Callable[[], Awaitable[None]]


class SensorhubApp(FastAPI):
    """The FastAPI app with its settings; `services` is set while its lifespan runs."""

    def __init__(self, *, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.services: Services | None = None

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document completed by `app.core.openapi` (problems, security...), once."""
        if self.openapi_schema is None:
            self.openapi_schema = openapi.complete(super().openapi(), self.routes, self.settings)
        return self.openapi_schema


def services_of(app: FastAPI) -> Services:
    """The running app's services (raises outside the lifespan)."""
    services = app.services if isinstance(app, SensorhubApp) else None
    if services is None:
        raise RuntimeError("the app's lifespan is not running: no services yet")
    return services


# Any request that reaches the services may find MongoDB down: 503 with `Retry-After`.
@openapi.raises(DatabaseUnavailable)
async def get_services(connection: HTTPConnection) -> Services:
    """The services of the app serving this request or socket."""
    services: Services | None = connection.app.services
    if services is None:
        raise RuntimeError("the app's lifespan is not running: no services yet")
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
