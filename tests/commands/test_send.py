"""Sending commands: schema validation, bounds, Idempotency-Key, cancel; bad input changes
nothing and answers problem+json."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from app.core.db import MongoDatabase
from app.core.errors import PROBLEM_JSON
from tests.commands.conftest import MakeCommanded, poll, send

BAD: list[tuple[str, dict[str, Any], str]] = [
    ("unknown command", {"name": "explode"}, "command-unknown"),
    ("missing param", {"name": "set_interval", "params": {}}, "command-params-invalid"),
    (
        "param wrong type",
        {"name": "set_interval", "params": {"seconds": "ten"}},
        "command-params-invalid",
    ),
    (
        "param out of range",
        {"name": "set_interval", "params": {"seconds": 0}},
        "command-params-invalid",
    ),
    (
        "extra param",
        {"name": "set_interval", "params": {"seconds": 5, "x": 1}},
        "command-params-invalid",
    ),
    ("dollar key", {"name": "reboot", "params": {"$set": 1}}, "command-input-invalid"),
    ("dotted key", {"name": "reboot", "params": {"a.b": 1}}, "command-input-invalid"),
    ("params too large", {"name": "reboot", "params": {"x": "a" * 9000}}, "command-input-invalid"),
    ("ttl too long", {"name": "reboot", "ttl_s": 10**9}, "command-ttl-too-long"),
    ("ttl zero", {"name": "reboot", "ttl_s": 0}, "validation-error"),
    ("bad name", {"name": "no spaces"}, "validation-error"),
    ("params not an object", {"name": "reboot", "params": [1]}, "validation-error"),
    ("unknown field", {"name": "reboot", "priority": 1}, "validation-error"),
]


class TestSend:
    async def test_queued_with_product_defaults(
        self, client: httpx.AsyncClient, make_commanded: MakeCommanded, master_headers: Any
    ) -> None:
        target = await make_commanded()
        body = {"name": "set_interval", "params": {"seconds": 60}}
        resp = await send(client, target, master_headers, body)
        assert resp.status_code == 201, resp.text
        data = resp.json()
        assert data["state"] == "queued"
        assert data["params"] == {"seconds": 60}
        assert data["ttl_s"] == 600  # the product's default
        assert data["result_expected"] is True
        assert data["attempts"] == 0
        got = await client.get(f"{target.url}/{data['id']}", headers=master_headers)
        assert got.json() == data

    @pytest.mark.parametrize(("case", "body", "problem"), BAD, ids=[c for c, _, _ in BAD])
    async def test_bad_input_422_problem_and_nothing_queued(
        self,
        case: str,
        body: dict[str, Any],
        problem: str,
        client: httpx.AsyncClient,
        make_commanded: MakeCommanded,
        master_headers: Any,
        mongo_db: MongoDatabase,
    ) -> None:
        target = await make_commanded()
        resp = await send(client, target, master_headers, body)
        assert resp.status_code == 422, resp.text
        assert resp.headers["content-type"].startswith(PROBLEM_JSON)
        assert resp.json()["type"] == f"/problems/{problem}"
        assert await mongo_db.commands.count_documents({"device_id": target.id}) == 0

    async def test_schema_with_local_refs(
        self, client: httpx.AsyncClient, make_commanded: MakeCommanded, master_headers: Any
    ) -> None:
        schema = {
            "type": "object",
            "$defs": {"pct": {"type": "number", "minimum": 0, "maximum": 100}},
            "properties": {"open": {"$ref": "#/$defs/pct"}},
            "required": ["open"],
        }
        target = await make_commanded(commands=[{"name": "valve", "params": schema}])
        ok = await send(client, target, master_headers, {"name": "valve", "params": {"open": 5}})
        assert ok.status_code == 201, ok.text
        bad = await send(client, target, master_headers, {"name": "valve", "params": {"open": 500}})
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["loc"] == ["params", "open"]

    async def test_params_errors_name_the_field(
        self, client: httpx.AsyncClient, make_commanded: MakeCommanded, master_headers: Any
    ) -> None:
        target = await make_commanded()
        body = {"name": "set_interval", "params": {"seconds": "ten"}}
        errors = (await send(client, target, master_headers, body)).json()["errors"]
        assert errors[0]["loc"] == ["params", "seconds"]

    async def test_queue_bound(
        self,
        app_with: Any,
        make_settings: Any,
        make_commanded: MakeCommanded,
        master_headers: Any,
        mongo_db: MongoDatabase,
    ) -> None:
        target = await make_commanded()
        async with (
            app_with(make_settings(commands_max_pending_per_device=2)) as app,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://testserver"
            ) as client,
        ):
            for _ in range(2):
                assert (await send(client, target, master_headers)).status_code == 201
            resp = await send(client, target, master_headers)
            assert resp.status_code == 409
            assert resp.json()["type"] == "/problems/command-queue-full"
        assert await mongo_db.commands.count_documents({"device_id": target.id}) == 2


class TestIdempotentSend:
    async def test_retry_returns_the_first_command(
        self,
        client: httpx.AsyncClient,
        make_commanded: MakeCommanded,
        master_headers: Any,
        mongo_db: MongoDatabase,
    ) -> None:
        target = await make_commanded()
        headers = {**master_headers, "Idempotency-Key": "k-1"}
        first = await send(client, target, headers)
        again = await send(client, target, headers)
        assert first.status_code == again.status_code == 201
        assert again.json()["id"] == first.json()["id"]
        assert again.headers["Idempotent-Replayed"] == "true"
        assert "Idempotent-Replayed" not in first.headers
        assert await mongo_db.commands.count_documents({"device_id": target.id}) == 1

    async def test_concurrent_retries_queue_one(
        self,
        client: httpx.AsyncClient,
        make_commanded: MakeCommanded,
        master_headers: Any,
        mongo_db: MongoDatabase,
    ) -> None:
        target = await make_commanded()
        headers = {**master_headers, "Idempotency-Key": "k-race"}
        answers = await asyncio.gather(*(send(client, target, headers) for _ in range(5)))
        assert {a.status_code for a in answers} == {201}
        assert len({a.json()["id"] for a in answers}) == 1
        assert await mongo_db.commands.count_documents({"device_id": target.id}) == 1

    async def test_same_key_other_body_422(
        self,
        client: httpx.AsyncClient,
        make_commanded: MakeCommanded,
        master_headers: Any,
        mongo_db: MongoDatabase,
    ) -> None:
        target = await make_commanded()
        headers = {**master_headers, "Idempotency-Key": "k-2"}
        assert (await send(client, target, headers)).status_code == 201
        body = {"name": "set_interval", "params": {"seconds": 5}}
        resp = await send(client, target, headers, body)
        assert resp.status_code == 422
        assert resp.json()["type"] == "/problems/idempotency-key-reused"
        assert await mongo_db.commands.count_documents({"device_id": target.id}) == 1

    async def test_retry_replays_even_after_the_product_changed(
        self,
        client: httpx.AsyncClient,
        make_commanded: MakeCommanded,
        master_headers: Any,
        mongo_db: MongoDatabase,
    ) -> None:
        target = await make_commanded()
        headers = {**master_headers, "Idempotency-Key": "k-3"}
        first = await send(client, target, headers)
        await mongo_db.products.update_one({"_id": target.product.id}, {"$set": {"commands": []}})
        again = await send(client, target, headers)
        assert again.status_code == 201, again.text
        assert again.json()["id"] == first.json()["id"]
        assert (await send(client, target, master_headers)).status_code == 422

    async def test_without_key_each_send_queues(
        self, client: httpx.AsyncClient, make_commanded: MakeCommanded, master_headers: Any
    ) -> None:
        target = await make_commanded()
        first = await send(client, target, master_headers)
        second = await send(client, target, master_headers)
        assert first.json()["id"] != second.json()["id"]

    async def test_invalid_key_422(
        self, client: httpx.AsyncClient, make_commanded: MakeCommanded, master_headers: Any
    ) -> None:
        target = await make_commanded()
        resp = await send(client, target, {**master_headers, "Idempotency-Key": "a b"})
        # The header's documented pattern refuses it, as on the readings route; nothing queued.
        assert resp.status_code == 422
        assert resp.json()["type"] == "/problems/validation-error"
        [error] = resp.json()["errors"]
        assert error["loc"] == ["header", "Idempotency-Key"]
        assert error["type"] == "string_pattern_mismatch"
        listed = await client.get(target.url, headers=master_headers)
        assert listed.json()["items"] == []


class TestCancel:
    async def test_cancelled_is_never_delivered(
        self, client: httpx.AsyncClient, make_commanded: MakeCommanded, master_headers: Any
    ) -> None:
        target = await make_commanded()
        command = (await send(client, target, master_headers)).json()
        resp = await client.post(f"{target.url}/{command['id']}/cancel", headers=master_headers)
        assert resp.status_code == 200, resp.text
        assert resp.json()["state"] == "cancelled"
        assert resp.json()["finished_at"] is not None
        assert (await poll(client, target)).status_code == 204

    async def test_delivered_cannot_be_cancelled(
        self, client: httpx.AsyncClient, make_commanded: MakeCommanded, master_headers: Any
    ) -> None:
        target = await make_commanded()
        command = (await send(client, target, master_headers)).json()
        assert (await poll(client, target)).status_code == 200
        url = f"{target.url}/{command['id']}"
        resp = await client.post(f"{url}/cancel", headers=master_headers)
        assert resp.status_code == 409
        assert resp.json()["type"] == "/problems/command-not-cancellable"
        assert (await client.get(url, headers=master_headers)).json()["state"] == "delivered"

    async def test_unknown_command_404(
        self, client: httpx.AsyncClient, make_commanded: MakeCommanded, master_headers: Any
    ) -> None:
        target = await make_commanded()
        for cid in ("0" * 24, "nope"):
            resp = await client.post(f"{target.url}/{cid}/cancel", headers=master_headers)
            assert resp.status_code == 404
            assert resp.json()["type"] == "/problems/command-not-found"


class TestList:
    async def test_cursor_pages_and_state_filter(
        self, client: httpx.AsyncClient, make_commanded: MakeCommanded, master_headers: Any
    ) -> None:
        target = await make_commanded()
        sent = [(await send(client, target, master_headers)).json()["id"] for _ in range(5)]
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (await client.get(target.url, params=params, headers=master_headers)).json()
            seen += [c["id"] for c in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == sent
        await poll(client, target)
        delivered = await client.get(
            target.url, params={"state": "delivered"}, headers=master_headers
        )
        assert [c["id"] for c in delivered.json()["items"]] == sent[:1]

    async def test_bad_state_and_cursor_422(
        self, client: httpx.AsyncClient, make_commanded: MakeCommanded, master_headers: Any
    ) -> None:
        target = await make_commanded()
        for params in ({"state": "lost"}, {"cursor": "zz"}, {"limit": 0}):
            resp = await client.get(target.url, params=params, headers=master_headers)
            assert resp.status_code == 422, params
            assert resp.headers["content-type"].startswith(PROBLEM_JSON)
