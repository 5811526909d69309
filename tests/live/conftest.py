"""Two API processes on different ports sharing MongoDB and a Redis of their own.

The Redis is private to this package so the restart test can stop and start it; the
settings are short (auth timeout, re-check interval, send queue) so nothing waits long.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from app.core.config import Settings
from tests.fixtures.servers import ROOT, ManagedProcess, free_port, start_redis

LIVE_ENV = {
    "WS_AUTH_TIMEOUT_S": "1.0",
    "LIVE_RECHECK_S": "0.5",
    "WS_SEND_QUEUE": "8",
    "WS_REAUTH_NOTICE_S": "2.0",
    "WS_MAX_SUBSCRIPTIONS": "5",
    "WS_MAX_CONNECTIONS_PER_USER": "3",
    "WS_MESSAGES_PER_S": "20",
    "LIVE_SSE_KEEPALIVE_S": "1.0",
    "INGEST_FLUSH_INTERVAL_MS": "5",
}


@dataclass
class Api:
    """One API process."""

    proc: ManagedProcess
    url: str

    @property
    def ws(self) -> str:
        """The socket's URL."""
        return self.url.replace("http://", "ws://") + "/api/v1/ws"


def start_api(
    settings: Settings,
    workdir: Path,
    redis_url: str,
    name: str,
    *,
    as_module: bool = False,
    **extra_env: str,
) -> Api:
    """The API in a process of its own: uvicorn's command line, or `python -m app` (which
    runs uvicorn with the server pings and the graceful drain) when `as_module`."""
    port = free_port()
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "MONGODB_URL": settings.mongodb_url,
        "MONGODB_DB": settings.mongodb_db,
        "REDIS_URL": redis_url,
        "LOG_LEVEL": "WARNING",
        "FIREBASE_PROJECT_ID": settings.firebase_project_id or "",
        "FIREBASE_AUTH_EMULATOR_HOST": settings.firebase_auth_emulator_host or "",
        "JWT_SECRET": settings.jwt_signing_key,
        "MASTER_TOKEN": settings.master_token.get_secret_value() if settings.master_token else "",
        "RATE_LIMIT_DEVICE_LIMIT": "1000000",
        "RATE_LIMIT_USER_LIMIT": "1000000",
        "RATE_LIMIT_AUTH_FAILURES_LIMIT": "1000000",
        # Whichever starts first (this process or the suite's app) brings the schema up.
        "MIGRATIONS_AUTO_APPLY": "true",
        **LIVE_ENV,
        **extra_env,
    }
    if as_module:
        argv = [sys.executable, "-m", "app"]
        env.update({"HOST": "127.0.0.1", "PORT": str(port)})
    else:
        argv = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory"]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    proc = ManagedProcess(name, argv, port=port, cwd=ROOT, env=env, log_dir=workdir)

    def ready() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as resp:
            return bool(resp.status == 200)

    proc.start(timeout=60, ready=ready)
    return Api(proc, f"http://127.0.0.1:{port}")


@pytest.fixture(scope="package")
def live_redis(workdir: Path) -> Iterator[ManagedProcess]:
    """A Redis only these tests use (the restart test restarts it)."""
    proc = start_redis(workdir)
    yield proc
    proc.stop()


@pytest.fixture(scope="package")
def apis(settings: Settings, workdir: Path, live_redis: ManagedProcess) -> Iterator[list[Api]]:
    """Processes A and B."""
    redis_url = f"redis://127.0.0.1:{live_redis.port}/0"
    started = [
        start_api(settings, workdir, redis_url, "api-live-a"),
        start_api(settings, workdir, redis_url, "api-live-b"),
    ]
    yield started
    for api in started:
        api.proc.stop()


@pytest.fixture
def api_a(apis: list[Api]) -> Api:
    return apis[0]


@pytest.fixture
def api_b(apis: list[Api]) -> Api:
    return apis[1]


async def recv(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    """The next message as JSON (fails after `timeout`)."""
    async with asyncio.timeout(timeout):
        raw = await ws.recv()
    data: dict[str, Any] = json.loads(raw)
    return data


async def until(ws: ClientConnection, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    """Skip messages until one of type `kind` arrives."""
    async with asyncio.timeout(timeout):
        while True:
            message = await recv(ws, timeout)
            if message["type"] == kind:
                return message


async def send(ws: ClientConnection, **message: Any) -> None:
    """Send a JSON message."""
    await ws.send(json.dumps(message))


@pytest.fixture
async def opened() -> AsyncIterator[list[ClientConnection]]:
    """Sockets a test opened, closed at its end."""
    sockets: list[ClientConnection] = []
    yield sockets
    for ws in sockets:
        await ws.close()


async def authed(url: str, token: str, sockets: list[ClientConnection]) -> ClientConnection:
    """A socket that has sent `auth` and got `authenticated`."""
    ws = await connect(url)
    sockets.append(ws)
    await send(ws, type="auth", token=token)
    answer = await recv(ws)
    assert answer["type"] == "authenticated", answer
    return ws
