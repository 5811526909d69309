"""The beat's sweep: one run at a time, each command moved once, the right end state."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from bson import ObjectId
from fastapi import FastAPI

from app.commands.repository import now_ms
from app.core.config import Settings
from app.core.db import MongoDatabase
from app.worker import cleanup
from app.worker.context import WorkerContext
from app.worker.locks import redis_lock
from tests.commands.conftest import MakeCommanded, Sweep, poll, send


@pytest.fixture
def ctx(app: FastAPI, settings: Settings) -> Iterator[WorkerContext]:
    """A worker context in the test process (the same code the worker runs)."""
    context = WorkerContext(settings)
    yield context
    context.close()


async def _queue(
    client: httpx.AsyncClient, target: Any, headers: dict[str, str], n: int
) -> list[str]:
    return [(await send(client, target, headers)).json()["id"] for _ in range(n)]


class TestSweep:
    async def test_skipped_while_another_run_holds_the_lock(
        self,
        ctx: WorkerContext,
        client: httpx.AsyncClient,
        make_commanded: MakeCommanded,
        master_headers: Any,
        mongo_db: MongoDatabase,
    ) -> None:
        target = await make_commanded()
        [cid] = await _queue(client, target, master_headers, 1)
        await mongo_db.commands.update_one(
            {"_id": ObjectId(cid)}, {"$set": {"expires_at_ms": now_ms() - 1}}
        )
        with redis_lock(ctx.redis, "commands.sweep", ttl_ms=10_000) as held:
            assert held
            assert await asyncio.to_thread(cleanup.sweep_commands, ctx) == cleanup.SKIPPED
            doc = await mongo_db.commands.find_one({"_id": ObjectId(cid)})
            assert doc is not None
            assert doc["state"] == "queued"
        counts = await asyncio.to_thread(cleanup.sweep_commands, ctx)
        assert counts["expired"] >= 1
        doc = await mongo_db.commands.find_one({"_id": ObjectId(cid)})
        assert doc is not None
        assert doc["state"] == "expired"

    async def test_concurrent_passes_move_each_command_once(
        self,
        client: httpx.AsyncClient,
        make_commanded: MakeCommanded,
        master_headers: Any,
        mongo_db: MongoDatabase,
        run_sweep: Sweep,
    ) -> None:
        target = await make_commanded()
        ids = await _queue(client, target, master_headers, 20)
        for _ in ids:
            assert (await poll(client, target)).status_code == 200
        await mongo_db.commands.update_many(
            {"device_id": target.id}, {"$set": {"ack_deadline_ms": now_ms() - 1}}
        )
        # Without the lock (as if two beats ran): the conditional writes still move each once.
        passes = await asyncio.gather(*(run_sweep() for _ in range(3)))
        assert sum(p["requeued"] for p in passes) >= 20
        mine = await mongo_db.commands.count_documents({"device_id": target.id, "state": "queued"})
        assert mine == 20
        attempts = {d["attempts"] async for d in mongo_db.commands.find({"device_id": target.id})}
        assert attempts == {1}
        redelivered = (await poll(client, target)).json()
        assert redelivered["id"] == ids[0]
        assert redelivered["attempt"] == 2

    async def test_overdue_past_ttl_ends_expired_not_requeued(
        self,
        client: httpx.AsyncClient,
        make_commanded: MakeCommanded,
        master_headers: Any,
        mongo_db: MongoDatabase,
        run_sweep: Sweep,
    ) -> None:
        target = await make_commanded()
        [cid] = await _queue(client, target, master_headers, 1)
        assert (await poll(client, target)).status_code == 200
        past = now_ms() - 1
        await mongo_db.commands.update_one(
            {"_id": ObjectId(cid)}, {"$set": {"ack_deadline_ms": past, "expires_at_ms": past}}
        )
        await run_sweep()
        doc = await mongo_db.commands.find_one({"_id": ObjectId(cid)})
        assert doc is not None
        assert doc["state"] == "expired"
        assert (await poll(client, target)).status_code == 204


class TestSweepBound:
    async def test_one_pass_changes_at_most_the_batch(
        self,
        client: httpx.AsyncClient,
        make_commanded: MakeCommanded,
        master_headers: Any,
        mongo_db: MongoDatabase,
        run_sweep: Sweep,
    ) -> None:
        target = await make_commanded()
        await _queue(client, target, master_headers, 5)
        await mongo_db.commands.update_many(
            {"device_id": target.id}, {"$set": {"expires_at_ms": now_ms() - 1}}
        )
        passes = 0
        while await mongo_db.commands.count_documents({"device_id": target.id, "state": "queued"}):
            counts = await run_sweep(commands_sweep_batch=2)
            assert counts["expired"] <= 2
            passes += 1
            assert passes <= 10
        assert passes >= 3
