"""The store round trips of the hottest calls, counted: warm, an authorised read costs at
most one MongoDB command (the data itself) and one Redis round trip (the limiter), and a
single-reading ingest reads nothing from MongoDB.

MongoDB commands are counted by a pymongo `CommandListener` (registered before the app under
test makes its client), Redis commands by `MONITOR`. Each keeps only the commands sent to the
app's own database: a MongoDB database and a Redis database no other app uses, so the shared
app's background work in the same process never counts.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pymongo import MongoClient, monitoring
from redis.asyncio import Redis

from app.catalog.models import Device
from app.core.config import Settings
from app.core.services import services_of
from tests.fixtures.app import client_for, running_app
from tests.fixtures.catalog_http import new_viewer
from tests.fixtures.identities import MakeUser
from tests.fixtures.servers import ManagedProcess
from tests.fixtures.worker import eventually

API = "/api/v1"
BUDGET_DB = 13  # a Redis database only this app uses, so MONITOR can tell its commands apart
READ_COMMANDS = {"find", "aggregate", "count", "distinct", "getMore", "countDocuments"}
# Heartbeats of the invalidation feeds' own connections, sent every few seconds whatever
# the traffic: not part of any request.
IDLE_COMMANDS = {"PING"}


class MongoCounter(monitoring.CommandListener):
    """Names of the MongoDB commands started on `database` while armed."""

    def __init__(self) -> None:
        self.armed = False
        self.database = ""
        self.commands: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        """Record a command started on the app's database while armed."""
        if self.armed and event.database_name == self.database:
            self.commands.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        """Not needed."""

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        """Not needed."""


_COUNTER = MongoCounter()
_REGISTERED: list[bool] = []


@pytest.fixture(scope="module")
def budget_db(db_name: str, mongodb_url: str) -> Iterator[str]:
    """The MongoDB database only the app under test uses; dropped after the module."""
    name = f"{db_name}_budget"
    yield name
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_url)
    try:
        client.drop_database(name)
    finally:
        client.close()


@pytest.fixture(scope="module")
def mongo_counter(budget_db: str) -> Iterator[MongoCounter]:
    """The listener (pymongo cannot unregister one; it records only while armed)."""
    if not _REGISTERED:
        monitoring.register(_COUNTER)  # applies to clients made from now on
        _REGISTERED.append(True)
    _COUNTER.database = budget_db
    yield _COUNTER
    _COUNTER.armed = False


@dataclass
class RedisMonitor:
    """The commands the app under test sends to Redis, between two markers."""

    url: str
    commands: list[str] = field(default_factory=list)

    @asynccontextmanager
    async def watching(self) -> AsyncIterator[list[str]]:
        """Collect the app's commands sent while the block runs."""
        marker = uuid.uuid4().hex
        seen: list[dict[str, Any]] = []
        watcher = Redis.from_url(self.url)
        own = Redis.from_url(self.url)
        done = asyncio.Event()

        async def listen() -> None:
            async with watcher.monitor() as monitor:
                ready.set()
                async for entry in monitor.listen():
                    seen.append(entry)
                    if marker in str(entry.get("command")) and "end" in str(entry.get("command")):
                        done.set()
                        return

        ready = asyncio.Event()
        task = asyncio.create_task(listen())
        await asyncio.wait_for(ready.wait(), 5)
        await own.echo(f"{marker} start")
        await eventually(lambda: any(marker in str(e.get("command")) for e in seen), timeout=5)
        commands: list[str] = []
        try:
            yield commands
        finally:
            await own.echo(f"{marker} end")
            await asyncio.wait_for(done.wait(), 5)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await watcher.aclose()
            await own.aclose()
        start = next(i for i, e in enumerate(seen) if marker in str(e.get("command")))
        for entry in seen[start + 1 : -1]:
            name = str(entry.get("command", "")).split(" ", 1)[0].upper()
            if entry.get("client_type") == "lua":
                continue  # run inside a script the app sent: part of that one round trip
            if int(entry.get("db", -1)) == BUDGET_DB and name not in IDLE_COMMANDS:
                commands.append(str(entry.get("command")))


@dataclass
class Scene:
    """A non-admin user whose only right is a viewer grant on the device's parent folder."""

    app: FastAPI
    http: httpx.AsyncClient
    user_headers: dict[str, str]
    device: Device
    device_headers: dict[str, str]

    async def settled(self) -> None:
        """Wait for the work the app does after acknowledging readings (first-sight
        bookkeeping of the flush listeners), so it is not counted as the next call's."""
        await services_of(self.app).batcher.listeners_idle()


@pytest.fixture
async def scene(
    make_settings: Callable[..., Settings],
    redis_server: ManagedProcess,
    mongo_counter: MongoCounter,
    make_user: MakeUser,
    budget_db: str,
) -> AsyncIterator[Scene]:
    """The app under test (databases of its own) and the user, folders and device."""
    settings = make_settings(
        mongodb_db=budget_db, redis_url=f"redis://127.0.0.1:{redis_server.port}/{BUDGET_DB}"
    )
    async with running_app(settings) as app, client_for(app) as http:
        services = services_of(app)
        # Every cache trusted on these paths follows its change feed; until it is subscribed
        # it is bypassed (a read per request), and it starts empty when it is.
        followers = (
            services.principals,
            services.access,
            services.device_contexts,
            services.device_keys,
            services.alert_rules,
        )
        await eventually(lambda: all(follower.live for follower in followers))
        viewer = await new_viewer(services.engine, http, make_user)
        yield Scene(
            app=app,
            http=http,
            user_headers=viewer.headers,
            device=viewer.device,
            device_headers={"X-Device-Key": viewer.device_key},
        )


Call = Callable[[], Awaitable[httpx.Response]]


async def counted(
    call: Call,
    *,
    expected: int,
    counter: MongoCounter,
    monitor: RedisMonitor,
    scene: Scene,
) -> tuple[list[str], list[str]]:
    """Warm the path (twice), then count the MongoDB and Redis commands of one more call."""
    for _ in range(2):
        resp = await call()
        assert resp.status_code == expected, resp.text
    await scene.settled()
    counter.commands.clear()
    async with monitor.watching() as redis_commands:
        counter.armed = True
        try:
            resp = await call()
        finally:
            counter.armed = False
    assert resp.status_code == expected, resp.text
    return list(counter.commands), redis_commands


@pytest.fixture
def monitor(redis_server: ManagedProcess) -> RedisMonitor:
    """MONITOR on the test Redis, keeping the app under test's database."""
    return RedisMonitor(f"redis://127.0.0.1:{redis_server.port}/0")


class TestAuthorisedReadBudget:
    async def test_latest_readings(
        self, scene: Scene, mongo_counter: MongoCounter, monitor: RedisMonitor
    ) -> None:
        path = f"{API}/devices/{scene.device.id}/readings"
        resp = await scene.http.post(
            path, json={"metrics": {"temperature": 21.5}}, headers=scene.device_headers
        )
        assert resp.status_code == 202, resp.text
        mongo, redis_cmds = await counted(
            lambda: scene.http.get(f"{path}/latest", headers=scene.user_headers),
            expected=200,
            counter=mongo_counter,
            monitor=monitor,
            scene=scene,
        )
        assert len(mongo) <= 1, mongo
        assert len(redis_cmds) + len(mongo) <= 2, (mongo, redis_cmds)
        assert len(redis_cmds) >= 1, "the limiter's round trip is counted"

    @pytest.mark.parametrize("path", ["devices/{device}", "auth/me"])
    async def test_device_and_me(
        self, scene: Scene, mongo_counter: MongoCounter, monitor: RedisMonitor, path: str
    ) -> None:
        url = f"{API}/{path.format(device=scene.device.id)}"
        mongo, redis_cmds = await counted(
            lambda: scene.http.get(url, headers=scene.user_headers),
            expected=200,
            counter=mongo_counter,
            monitor=monitor,
            scene=scene,
        )
        assert mongo == ["find"]
        assert len(redis_cmds) == 1, redis_cmds


class TestIngestBudget:
    async def test_single_reading_reads_nothing(
        self, scene: Scene, mongo_counter: MongoCounter, monitor: RedisMonitor
    ) -> None:
        path = f"{API}/devices/{scene.device.id}/readings"
        mongo, _ = await counted(
            lambda: scene.http.post(
                path, json={"metrics": {"temperature": 21.5}}, headers=scene.device_headers
            ),
            expected=202,
            counter=mongo_counter,
            monitor=monitor,
            scene=scene,
        )
        reads = [name for name in mongo if name in READ_COMMANDS]
        assert reads == [], mongo

    async def test_a_device_posting_once_a_minute_reads_nothing(
        self, scene: Scene, mongo_counter: MongoCounter
    ) -> None:
        """The context read at the device's earlier readings, a minute ago (the old 5 s TTL
        would have cost three reads), is still used: only an announced change or
        `READINGS_CONTEXT_CACHE_S` (300 s) ends it."""
        contexts = services_of(scene.app).device_contexts
        path = f"{API}/devices/{scene.device.id}/readings"

        async def one_reading() -> list[str]:
            mongo_counter.commands.clear()
            mongo_counter.armed = True
            try:
                resp = await scene.http.post(
                    path, json={"metrics": {"temperature": 21.5}}, headers=scene.device_headers
                )
            finally:
                mongo_counter.armed = False
            assert resp.status_code == 202, resp.text
            return [name for name in mongo_counter.commands if name in READ_COMMANDS]

        for _ in range(2):  # the context is read and kept; first-reading work settles
            await one_reading()
        await scene.settled()
        for age_s in (6, 60, 299):
            contexts.clock = lambda age_s=age_s: time.monotonic() + age_s
            assert await one_reading() == [], f"context {age_s} s old"
        contexts.clock = lambda: time.monotonic() + 301  # past the bound: read again
        assert await one_reading()
