"""Devices whose product declares commands, and the sweep run as the beat would run it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from odmantic import AIOEngine
from pymongo import MongoClient
from redis import Redis

from app.auth.principal import Principal
from app.catalog.command_specs import CommandSpec
from app.catalog.models import Device, Product
from app.commands import sweep
from app.core import collections
from app.core.config import Settings
from tests.fixtures.catalog import MASTER, new_device, new_product
from tests.fixtures.catalog_http import API

SET_INTERVAL = {
    "name": "set_interval",
    "params": {
        "type": "object",
        "properties": {"seconds": {"type": "integer", "minimum": 1, "maximum": 86400}},
        "required": ["seconds"],
        "additionalProperties": False,
    },
    "ttl_s": 600,
    "result_expected": True,
}
COMMANDS: list[dict[str, Any]] = [{"name": "reboot"}, SET_INTERVAL]


@dataclass
class Commanded:
    """A stored device whose product declares COMMANDS, with its key."""

    device: Device
    product: Product
    key: str

    @property
    def id(self) -> str:
        """The device id (hex)."""
        return str(self.device.id)

    @property
    def url(self) -> str:
        """The device's commands collection URL."""
        return f"{API}/devices/{self.device.id}/commands"

    @property
    def headers(self) -> dict[str, str]:
        """Device authentication headers."""
        return {"X-Device-Key": self.key}


MakeCommanded = Callable[..., Awaitable[Commanded]]


@pytest.fixture
def make_commanded(engine: AIOEngine) -> MakeCommanded:
    """Async factory: a product declaring `commands` (COMMANDS by default) and one device."""

    async def make(
        *, owner: Principal = MASTER, commands: list[dict[str, Any]] | None = None
    ) -> Commanded:
        product = await new_product(
            engine,
            owner=owner,
            commands=[
                CommandSpec.model_validate(c).stored()
                for c in (COMMANDS if commands is None else commands)
            ],
        )
        device, key = await new_device(engine, owner=owner, product=product)
        return Commanded(device=device, product=product, key=key)

    return make


@pytest.fixture(scope="session")
def sync_clients(settings: Settings) -> Iterator[tuple[MongoClient[dict[str, Any]], Redis]]:
    """A pymongo client and a sync Redis client, as the worker has."""
    mongo: MongoClient[dict[str, Any]] = MongoClient(settings.mongodb_url, tz_aware=True)
    redis = Redis.from_url(settings.redis_url)
    yield mongo, redis
    mongo.close()
    redis.close()


Sweep = Callable[..., Awaitable[dict[str, int]]]


@pytest.fixture
def run_sweep(settings: Settings, sync_clients: tuple[MongoClient[dict[str, Any]], Redis]) -> Sweep:
    """Run one sweep pass (off the event loop, as in a worker) with optional setting changes."""
    mongo, redis = sync_clients

    async def run(**overrides: Any) -> dict[str, int]:
        commands = mongo[settings.mongodb_db][collections.COMMANDS]
        swept_settings = settings.model_copy(update=overrides)
        return await asyncio.to_thread(sweep.sweep, commands, redis, swept_settings)

    return run


async def send(
    client: httpx.AsyncClient,
    target: Commanded,
    headers: dict[str, str],
    body: dict[str, Any] | None = None,
    **kw: Any,
) -> httpx.Response:
    """POST a command (reboot unless `body`)."""
    return await client.post(target.url, json=body or {"name": "reboot"}, headers=headers, **kw)


async def poll(
    client: httpx.AsyncClient, target: Commanded, *, wait: float = 0, key: str | None = None
) -> httpx.Response:
    """The device's long-poll."""
    return await client.get(
        f"{target.url}/next",
        params={"wait": wait},
        headers={"X-Device-Key": key or target.key},
        timeout=wait + 10,
    )
