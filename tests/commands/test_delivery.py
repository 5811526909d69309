"""The device side: FIFO, exactly one delivery, results, redelivery, expiry, restarts."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from bson import ObjectId

from app.commands.repository import now_ms
from app.core.db import MongoDatabase
from tests.commands.conftest import MakeCommanded, Sweep, poll, send
from tests.fixtures.app import client_for


async def _result(
    client: httpx.AsyncClient,
    target: Any,
    delivery: dict[str, Any],
    *,
    status: str = "successful",
    result: dict[str, Any] | None = None,
    delivery_id: str | None = None,
) -> httpx.Response:
    body = {"delivery_id": delivery_id or delivery["delivery_id"], "status": status}
    if result is not None:
        body["result"] = result
    return await client.post(
        f"{target.url}/{delivery['id']}/result", json=body, headers=target.headers
    )


async def _overdue(mongo_db: MongoDatabase, command_id: str) -> None:
    """Move the ack deadline of a delivered command into the past."""
    await mongo_db.commands.update_one(
        {"_id": ObjectId(command_id)}, {"$set": {"ack_deadline_ms": now_ms() - 1}}
    )


class TestFifo:
    async def test_delivered_in_the_order_sent(
        self, client: httpx.AsyncClient, make_commanded: MakeCommanded, master_headers: Any
    ) -> None:
        target = await make_commanded()
        sent = []
        for seconds in (3, 1, 2, 5):
            body = {"name": "set_interval", "params": {"seconds": seconds}}
            sent.append((await send(client, target, master_headers, body)).json()["id"])
        got = [(await poll(client, target)).json()["id"] for _ in sent]
        assert got == sent
        assert (await poll(client, target)).status_code == 204


class TestExactlyOnce:
    async def test_two_concurrent_pollers_one_delivery(
        self, client: httpx.AsyncClient, make_commanded: MakeCommanded, master_headers: Any
    ) -> None:
        target = await make_commanded()
        for _ in range(3):  # a few rounds: the race must never hand one delivery out twice
            command = (await send(client, target, master_headers)).json()
            answers = await asyncio.gather(
                poll(client, target, wait=0.3), poll(client, target, wait=0.3)
            )
            codes = sorted(a.status_code for a in answers)
            assert codes == [200, 204], codes
            delivered = next(a for a in answers if a.status_code == 200).json()
            assert delivered["id"] == command["id"]
            assert delivered["attempt"] == 1

    async def test_waiting_pollers_woken_by_one_command(
        self, client: httpx.AsyncClient, make_commanded: MakeCommanded, master_headers: Any
    ) -> None:
        target = await make_commanded()
        polls = [asyncio.create_task(poll(client, target, wait=2)) for _ in range(2)]
        await asyncio.sleep(0.1)
        await send(client, target, master_headers)
        answers = await asyncio.gather(*polls)
        assert sorted(a.status_code for a in answers) == [200, 204]


class TestResult:
    async def test_successful_with_result(
        self, client: httpx.AsyncClient, make_commanded: MakeCommanded, master_headers: Any
    ) -> None:
        target = await make_commanded()
        body = {"name": "set_interval", "params": {"seconds": 9}}
        command = (await send(client, target, master_headers, body)).json()
        delivery = (await poll(client, target)).json()
        assert delivery["params"] == {"seconds": 9}
        assert delivery["result_expected"] is True
        resp = await _result(client, target, delivery, result={"applied": 9})
        assert resp.status_code == 200, resp.text
        seen = (await client.get(f"{target.url}/{command['id']}", headers=master_headers)).json()
        assert seen["state"] == "successful"
        assert seen["result"] == {"applied": 9}
        assert seen["finished_at"] is not None

    async def test_same_result_again_is_a_no_op_other_answer_409(
        self, client: httpx.AsyncClient, make_commanded: MakeCommanded, master_headers: Any
    ) -> None:
        target = await make_commanded()
        await send(client, target, master_headers)
        delivery = (await poll(client, target)).json()
        first = await _result(client, target, delivery, status="failed", result={"e": 1})
        again = await _result(client, target, delivery, status="failed", result={"e": 1})
        assert first.status_code == again.status_code == 200
        assert again.json() == first.json()
        other = await _result(client, target, delivery, status="successful")
        assert other.status_code == 409
        assert other.json()["type"] == "/problems/command-stale-delivery"

    async def test_bad_result_422_and_unchanged(
        self, client: httpx.AsyncClient, make_commanded: MakeCommanded, master_headers: Any
    ) -> None:
        target = await make_commanded()
        await send(client, target, master_headers)
        delivery = (await poll(client, target)).json()
        url = f"{target.url}/{delivery['id']}/result"
        bad: list[dict[str, Any]] = [
            {"delivery_id": delivery["delivery_id"], "status": "done"},
            {"delivery_id": "x", "status": "successful"},
            {"delivery_id": delivery["delivery_id"], "status": "successful", "result": [1]},
            {"delivery_id": delivery["delivery_id"], "status": "ok", "result": {"$a": 1}},
            {
                "delivery_id": delivery["delivery_id"],
                "status": "successful",
                "result": {"$a": 1},
            },
            {
                "delivery_id": delivery["delivery_id"],
                "status": "successful",
                "result": {"x": "a" * 20_000},
            },
        ]
        for body in bad:
            resp = await client.post(url, json=body, headers=target.headers)
            assert resp.status_code == 422, body
        seen = (await client.get(f"{target.url}/{delivery['id']}", headers=master_headers)).json()
        assert seen["state"] == "delivered"


class TestRedelivery:
    async def test_overdue_delivery_goes_again_and_old_id_is_stale(
        self,
        client: httpx.AsyncClient,
        make_commanded: MakeCommanded,
        master_headers: Any,
        mongo_db: MongoDatabase,
    ) -> None:
        target = await make_commanded()
        await send(client, target, master_headers)
        first = (await poll(client, target)).json()
        assert (await poll(client, target)).status_code == 204  # not overdue yet
        await _overdue(mongo_db, first["id"])
        second = (await poll(client, target)).json()
        assert second["id"] == first["id"]
        assert second["attempt"] == 2
        assert second["delivery_id"] != first["delivery_id"]
        stale = await _result(client, target, first)
        assert stale.status_code == 409
        assert stale.json()["type"] == "/problems/command-stale-delivery"
        assert (await _result(client, target, second)).status_code == 200

    async def test_late_result_after_requeue_is_accepted(
        self,
        client: httpx.AsyncClient,
        make_commanded: MakeCommanded,
        master_headers: Any,
        mongo_db: MongoDatabase,
        run_sweep: Sweep,
    ) -> None:
        target = await make_commanded()
        await send(client, target, master_headers)
        delivery = (await poll(client, target)).json()
        await _overdue(mongo_db, delivery["id"])
        await run_sweep()
        doc = await mongo_db.commands.find_one({"_id": ObjectId(delivery["id"])})
        assert doc is not None
        assert doc["state"] == "queued"
        assert (await _result(client, target, delivery)).status_code == 200
        assert (await poll(client, target)).status_code == 204

    async def test_attempts_run_out_then_timeout(
        self,
        client: httpx.AsyncClient,
        make_commanded: MakeCommanded,
        master_headers: Any,
        mongo_db: MongoDatabase,
        run_sweep: Sweep,
        settings: Any,
    ) -> None:
        target = await make_commanded()
        command = (await send(client, target, master_headers)).json()
        for attempt in range(1, settings.commands_max_attempts + 1):
            delivery = (await poll(client, target)).json()
            assert delivery["attempt"] == attempt
            await _overdue(mongo_db, command["id"])
        assert (await poll(client, target)).status_code == 204
        await run_sweep()
        seen = (await client.get(f"{target.url}/{command['id']}", headers=master_headers)).json()
        assert seen["state"] == "timeout"
        assert (await _result(client, target, delivery)).status_code == 409


class TestExpiry:
    async def test_expired_before_delivery_is_never_delivered(
        self,
        client: httpx.AsyncClient,
        make_commanded: MakeCommanded,
        master_headers: Any,
        mongo_db: MongoDatabase,
        run_sweep: Sweep,
    ) -> None:
        target = await make_commanded()
        command = (await send(client, target, master_headers)).json()
        await mongo_db.commands.update_one(
            {"_id": ObjectId(command["id"])}, {"$set": {"expires_at_ms": now_ms() - 1}}
        )
        assert (await poll(client, target)).status_code == 204
        counts = await run_sweep()
        assert counts["expired"] >= 1
        seen = (await client.get(f"{target.url}/{command['id']}", headers=master_headers)).json()
        assert seen["state"] == "expired"
        assert (await poll(client, target)).status_code == 204

    async def test_retention_deletes_old_finished_commands(
        self,
        client: httpx.AsyncClient,
        make_commanded: MakeCommanded,
        master_headers: Any,
        mongo_db: MongoDatabase,
        run_sweep: Sweep,
    ) -> None:
        target = await make_commanded()
        old = (await send(client, target, master_headers)).json()
        kept = (await send(client, target, master_headers)).json()
        for cid in (old["id"], kept["id"]):
            await client.post(f"{target.url}/{cid}/cancel", headers=master_headers)
        await mongo_db.commands.update_one(
            {"_id": ObjectId(old["id"])}, {"$set": {"finished_at_ms": now_ms() - 2 * 86_400_000}}
        )
        await run_sweep(commands_retention_days=1)
        left = {str(d["_id"]) async for d in mongo_db.commands.find({"device_id": target.id})}
        assert left == {kept["id"]}


class TestRestart:
    async def test_delivered_unacked_survives_a_restart(
        self,
        app_with: Any,
        make_settings: Any,
        make_commanded: MakeCommanded,
        master_headers: Any,
        mongo_db: MongoDatabase,
    ) -> None:
        target = await make_commanded()
        settings = make_settings()
        async with app_with(settings) as before, client_for(before) as client:
            await send(client, target, master_headers)
            await send(client, target, master_headers)
            first = (await poll(client, target)).json()
        # A new process: the delivery is still current there, and still answerable.
        async with app_with(settings) as after, client_for(after) as client:
            assert (await _result(client, target, first)).status_code == 200
            second = (await poll(client, target)).json()
            assert second["id"] != first["id"]
        # And once overdue, a restarted process delivers it again.
        await _overdue(mongo_db, second["id"])
        async with app_with(settings) as again, client_for(again) as client:
            redelivered = (await poll(client, target)).json()
            assert redelivered["id"] == second["id"]
            assert redelivered["attempt"] == 2
