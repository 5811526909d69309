"""Waking long-polls: in this process, from another process over Redis, without Redis (the
periodic re-check); the bound on waiting polls; status events and their metrics."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
from fastapi import FastAPI
from redis.asyncio import Redis

from app.commands import events
from app.commands.models import Command
from app.commands.repository import insert, next_seq, now_ms
from app.core.config import Settings
from app.core.services import services_of
from tests.commands.conftest import MakeCommanded, poll, send
from tests.fixtures.app import client_for


async def _until(check: Any, *, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


class TestLongPoll:
    async def test_woken_by_a_send_and_leaves_no_waiter(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        make_commanded: MakeCommanded,
        master_headers: Any,
    ) -> None:
        waker = services_of(app).command_waker
        target = await make_commanded()
        waiting = asyncio.create_task(poll(client, target, wait=20))
        await _until(lambda: waker.waiting >= 1)
        started = time.monotonic()
        command = (await send(client, target, master_headers)).json()
        resp = await waiting
        assert resp.status_code == 200
        assert resp.json()["id"] == command["id"]
        assert time.monotonic() - started < 2  # woken, not the 5 s re-check nor the 20 s wait
        assert waker.waiting == 0

    async def test_204_after_wait(
        self, client: httpx.AsyncClient, make_commanded: MakeCommanded
    ) -> None:
        target = await make_commanded()
        started = time.monotonic()
        resp = await poll(client, target, wait=0.3)
        assert resp.status_code == 204
        assert resp.content == b""
        assert time.monotonic() - started >= 0.3

    async def test_wait_is_capped_by_the_setting(
        self, app_with: Any, make_settings: Any, make_commanded: MakeCommanded
    ) -> None:
        target = await make_commanded()
        async with (
            app_with(make_settings(commands_poll_max_wait_s=0.2)) as capped,
            client_for(capped) as client,
        ):
            started = time.monotonic()
            assert (await poll(client, target, wait=60)).status_code == 204
            assert time.monotonic() - started < 5

    async def test_recheck_finds_a_command_nobody_announced(
        self,
        app_with: Any,
        make_settings: Any,
        make_commanded: MakeCommanded,
        engine: Any,
    ) -> None:
        target = await make_commanded()
        async with (
            app_with(make_settings(commands_poll_recheck_s=0.2)) as app,
            client_for(app) as client,
        ):
            waiting = asyncio.create_task(poll(client, target, wait=20))
            await _until(lambda: services_of(app).command_waker.waiting >= 1)
            # Stored without an event (as if the sender died before publishing).
            at = now_ms()
            command = Command(
                device_id=target.id,
                product_id=str(target.product.id),
                name="reboot",
                seq=await next_seq(engine, target.id),
                idempotency_key="silent",
                fingerprint="-",
                ttl_s=60,
                created_by="test",
                created_at_ms=at,
                expires_at_ms=at + 60_000,
            )
            await insert(engine, command)
            resp = await asyncio.wait_for(waiting, 5)
            assert resp.json()["id"] == str(command.id)

    async def test_waiters_bounded_per_process(
        self, app_with: Any, make_settings: Any, make_commanded: MakeCommanded
    ) -> None:
        first, second = await make_commanded(), await make_commanded()
        async with (
            app_with(make_settings(commands_max_waiters=1)) as app,
            client_for(app) as client,
        ):
            waiting = asyncio.create_task(poll(client, first, wait=1))
            await _until(lambda: services_of(app).command_waker.waiting == 1)
            refused = await poll(client, second, wait=1)
            assert refused.status_code == 503
            assert refused.headers["Retry-After"] == "1"
            assert refused.json()["type"] == "/problems/command-pollers-full"
            assert (await waiting).status_code == 204


class TestNoConnectionHeld:
    async def test_waiting_polls_leave_the_pool_free(
        self,
        settings: Settings,
        app_with: Any,
        make_settings: Any,
        make_commanded: MakeCommanded,
        master_headers: Any,
    ) -> None:
        targets = [await make_commanded() for _ in range(6)]
        # A pool of two connections: six waiting polls holding one each would starve it.
        url = settings.mongodb_url + ("&" if "?" in settings.mongodb_url else "/?")
        async with (
            app_with(make_settings(mongodb_url=f"{url}maxPoolSize=2")) as app,
            client_for(app) as client,
        ):
            waker = services_of(app).command_waker
            waiting = [asyncio.create_task(poll(client, t, wait=20)) for t in targets]
            await _until(lambda: waker.waiting == len(targets))
            started = time.monotonic()
            listed = await client.get(targets[0].url, headers=master_headers, timeout=5)
            assert listed.status_code == 200
            for target in targets:
                assert (await send(client, target, master_headers)).status_code == 201
            answers = await asyncio.gather(*waiting)
            assert [a.status_code for a in answers] == [200] * len(targets)
            assert time.monotonic() - started < 10


class TestCrossProcess:
    async def test_poll_on_one_process_woken_by_a_send_on_another(
        self,
        app_with: Any,
        make_settings: Any,
        make_commanded: MakeCommanded,
        master_headers: Any,
    ) -> None:
        target = await make_commanded()
        # The re-check is far away: only the Redis wake-up can answer in time.
        settings: Settings = make_settings(commands_poll_recheck_s=60)
        async with (
            app_with(settings) as poller_app,
            app_with(settings) as sender_app,
            client_for(poller_app) as poller,
            client_for(sender_app) as sender,
        ):
            waker = services_of(poller_app).command_waker
            await _until(lambda: waker.live)
            await _until(lambda: services_of(sender_app).command_waker.live)
            waiting = asyncio.create_task(poll(poller, target, wait=10))
            await _until(lambda: waker.waiting == 1)
            started = time.monotonic()
            command = (await send(sender, target, master_headers)).json()
            resp = await waiting
            assert resp.status_code == 200
            assert resp.json()["id"] == command["id"]
            assert time.monotonic() - started < 2


class TestEvents:
    async def test_each_state_change_is_published_and_counted(
        self,
        settings: Settings,
        client: httpx.AsyncClient,
        make_commanded: MakeCommanded,
        master_headers: Any,
    ) -> None:
        target = await make_commanded()
        redis = Redis.from_url(settings.redis_url)
        try:
            before = await redis.hgetall(events.TRANSITIONS_KEY)
            async with redis.pubsub() as pubsub:
                await pubsub.subscribe(events.CHANNEL)
                await send(client, target, master_headers)
                delivery = (await poll(client, target)).json()
                body = {"delivery_id": delivery["delivery_id"], "status": "successful"}
                await client.post(
                    f"{target.url}/{delivery['id']}/result", json=body, headers=target.headers
                )
                states: list[str] = []
                deadline = time.monotonic() + 5
                while len(states) < 3 and time.monotonic() < deadline:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                    if message is not None:
                        item = json.loads(message["data"])
                        if item["device_id"] == target.id:
                            assert item["type"] == "device.commands"
                            assert item["command_id"] == delivery["id"]
                            states.append(item["state"])
            assert states == ["queued", "delivered", "successful"]
            after = await redis.hgetall(events.TRANSITIONS_KEY)
            for state in ("queued", "delivered", "successful"):
                key = state.encode()
                assert int(after[key]) >= int(before.get(key, 0)) + 1
        finally:
            await redis.aclose()
        metrics = (await client.get("/metrics")).text
        assert 'sensorhub_device_command_transitions_total{state="successful"}' in metrics
