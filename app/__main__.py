"""`python -m app`: check settings and dependencies, then serve with uvicorn.

`python -m app migrate` applies pending schema migrations; `python -m app migrate --status`
lists applied and pending ones. Failures are one line on stderr and a non-zero exit, never a
traceback wall.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Callable
from typing import Any

import uvicorn
from pydantic import ValidationError

from app.core import db, redis
from app.core.config import Settings, get_settings
from app.core.services import SensorhubApp
from app.core.startup import StartupError, wait_for_dependencies
from app.migrations import runner as migrations

# How long a graceful stop waits for HTTP requests in flight, then for sockets to close.
_DRAIN_TIMEOUT_S = 5.0


class Server(uvicorn.Server):
    """uvicorn, letting the app say goodbye before uvicorn closes the connections itself.

    uvicorn's shutdown closes every open WebSocket with 1012 before the app's lifespan
    shutdown runs. Here, on SIGTERM or Ctrl-C: stop accepting, let HTTP requests in flight
    finish (their readings are written and published; SSE streams excepted), then
    `app.main.drain` (the last flush, then 1001 to every socket and the end of every SSE
    stream), then uvicorn's own shutdown.
    """

    def __init__(self, config: uvicorn.Config, *, app: SensorhubApp) -> None:
        super().__init__(config)
        self.app = app

    def _is_socket(self, connection: object) -> bool:
        ws_class = self.config.ws_protocol_class
        return isinstance(ws_class, type) and isinstance(connection, ws_class)

    async def _until(self, done: Callable[[], bool], timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self.force_exit and loop.time() < deadline and not done():
            await asyncio.sleep(0.05)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Drain HTTP, then the app (1001 to sockets), then uvicorn's own shutdown."""
        from app.main import drain, open_streams  # imported late: see `serve`

        for server in self.servers:
            server.close()
        connections = self.server_state.connections
        for connection in list(connections):
            if not self._is_socket(connection):
                connection.shutdown()
        # SSE streams are HTTP requests that never end by themselves: the drain ends them.
        await self._until(
            lambda: sum(not self._is_socket(c) for c in connections) <= open_streams(self.app),
            _DRAIN_TIMEOUT_S,
        )
        if not self.force_exit:
            await drain(self.app)
            await self._until(lambda: not connections, 1.0)
        await super().shutdown(sockets)


def settings_error_line(exc: ValidationError) -> str:
    """One line naming each bad setting and why, without echoing its value."""
    parts = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]).upper() or "settings"
        parts.append(f"{name}: {err['msg']}")
    return "configuration error: " + "; ".join(parts)


async def check_dependencies(settings: Settings, *, migrated: bool = True) -> None:
    """Wait for MongoDB and Redis like the lifespan does (and, with `migrated`, refuse
    pending migrations), then close the probes."""
    mongo_client = db.create_client(settings)
    redis_client = redis.create_redis(settings)
    try:
        await wait_for_dependencies(settings, mongo_client=mongo_client, redis_client=redis_client)
        waiting = await migrations.pending(db.create_engine(mongo_client, settings))
        if migrated and waiting and not settings.migrations_auto_apply:
            raise StartupError(
                f"{len(waiting)} schema migration(s) pending: run `python -m app migrate`"
            )
    finally:
        await redis_client.aclose()
        mongo_client.close()


async def migrate(settings: Settings, *, status_only: bool) -> None:
    """Apply pending migrations (or only list them), printing one line per step."""
    await check_dependencies(settings, migrated=False)
    mongo_client = db.create_client(settings)
    try:
        engine = db.create_engine(mongo_client, settings)
        if not status_only:
            for step_id in await migrations.apply_pending(engine, settings):
                print(f"applied  {step_id}")  # noqa: T201 - the command's output
        for step in await migrations.status(engine):
            when = step.applied_at.isoformat() if step.applied_at else "pending"
            print(f"{step.id:40} {when}")  # noqa: T201 - the command's output
    finally:
        mongo_client.close()


def main() -> None:
    """Entry point of `python -m app` and the `sensorhub` script."""
    args = sys.argv[1:]
    if args and args[0] not in ("migrate",):
        sys.exit(f"unknown command {args[0]!r}; usage: python -m app [migrate [--status]]")
    try:
        settings = get_settings()
    except ValidationError as exc:
        sys.exit(settings_error_line(exc))
    if args:
        try:
            asyncio.run(migrate(settings, status_only="--status" in args[1:]))
        except StartupError as exc:
            sys.exit(f"migrate failed: {exc}")
        return
    try:
        asyncio.run(check_dependencies(settings))
    except StartupError as exc:
        sys.exit(f"startup failed: {exc}")
    serve(settings)


def serve(settings: Settings) -> None:
    """Serve the API with uvicorn (the app is imported here, so `migrate` starts quickly)."""
    from app.main import create_app  # the API is most of the import time: only when serving

    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "proxy_headers": False,
        "log_config": None,
        # Server pings keep sockets alive through proxies and find dead clients.
        "ws_ping_interval": settings.ws_ping_interval_s,
        "ws_ping_timeout": settings.ws_ping_interval_s,
        "ws_per_message_deflate": settings.ws_compression,
    }
    if settings.web_concurrency > 1:
        # uvicorn's supervisor shares the socket between its worker processes; each runs the
        # app's lifespan (its own batcher). Its workers are plain uvicorn servers, so on a stop
        # sockets close with 1012 instead of `Server`'s 1001 (README, "Performance").
        uvicorn.run(
            "app.main:create_app", factory=True, workers=settings.web_concurrency, **options
        )
        return
    app = create_app(settings)
    Server(uvicorn.Config(app, **options), app=app).run()


if __name__ == "__main__":
    main()
