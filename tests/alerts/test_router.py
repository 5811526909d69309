"""Rules and alarms over HTTP: CRUD, bad input answered 4xx with nothing changed, ack/clear."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from odmantic import AIOEngine

from app.alerts import alarms
from app.alerts.models import AlertRule
from app.catalog.models import Device
from app.core import db
from app.core.db import database
from tests.fixtures.alerts import new_rule
from tests.fixtures.catalog import new_device, new_folder, new_product
from tests.fixtures.catalog_http import principal_of, signed_in
from tests.fixtures.identities import MakeUser, TestUser

API = "/api/v1"
THRESHOLD = {"type": "threshold", "metric": "temperature", "op": ">", "value": 30}


async def owned_device(engine: AIOEngine, user: TestUser) -> tuple[Any, Any, Device, str]:
    """A folder, product and device owned by `user`, the device in the folder."""
    owner = principal_of(user)
    folder = await new_folder(engine, owner=owner)
    product = await new_product(engine, owner=owner, folder=folder)
    device, key = await new_device(engine, owner=owner, product=product, folder=folder)
    return folder, product, device, key


async def stored_alarm(engine: AIOEngine, rule: AlertRule, device: Device) -> str:
    """Raise an alarm of `rule` on `device` directly; its id."""
    info = alarms.DeviceInfo(
        id=str(device.id),
        name=device.name,
        product_id=device.product_id,
        folder_path=tuple(device.folder_path),
    )
    query, update = alarms.raise_op(rule, info, ts_ms=1000, value=42.0, reason="test")
    await database(engine)["alarms"].update_one(query, update, upsert=True)
    doc = await database(engine)["alarms"].find_one(query)
    assert doc is not None
    return str(doc["_id"])


class TestRuleCrud:
    async def test_create_read_update_delete(
        self, client: httpx.AsyncClient, engine: AIOEngine, make_user: MakeUser
    ) -> None:
        user = await signed_in(make_user, client)
        _, product, _, _ = await owned_device(engine, user)
        body = {
            "name": "hot",
            "scope": {"type": "product", "id": str(product.id)},
            "severity": "critical",
            "condition": {**THRESHOLD, "hysteresis": 1},
            "notify": {"webhooks": [{"url": "https://example.com/h", "secret": "s" * 20}]},
        }
        resp = await client.post(f"{API}/alert-rules", json=body, headers=user.headers)
        assert resp.status_code == 201, resp.text
        rule = resp.json()
        assert rule["notify"]["webhooks"] == [{"url": "https://example.com/h"}]  # no secret
        assert rule["condition"]["hysteresis"] == 1
        rid = rule["id"]
        resp = await client.get(f"{API}/alert-rules/{rid}", headers=user.headers)
        assert resp.status_code == 200
        assert resp.json()["name"] == "hot"
        resp = await client.get(f"{API}/alert-rules?scope_id={product.id}", headers=user.headers)
        assert [r["id"] for r in resp.json()["items"]] == [rid]
        resp = await client.patch(
            f"{API}/alert-rules/{rid}", json={"enabled": False}, headers=user.headers
        )
        assert resp.status_code == 200
        assert resp.json()["enabled"] is False
        resp = await client.delete(f"{API}/alert-rules/{rid}", headers=user.headers)
        assert resp.status_code == 204
        resp = await client.get(f"{API}/alert-rules/{rid}", headers=user.headers)
        assert resp.status_code == 404

    @pytest.mark.parametrize(
        "change",
        [
            {"severity": "apocalyptic"},
            {"condition": {**THRESHOLD, "op": "=>"}},
            {"condition": {**THRESHOLD, "value": "NaN"}},
            {"condition": {**THRESHOLD, "hysteresis": 1, "clear": {"op": "<", "value": 1}}},
            {"condition": {"type": "anomaly", "metric": "t", "k": 3, "window": 10**9}},
            {"condition": {"type": "rate", "window_s": 10}},
            {"condition": {"type": "no_data", "after_s": 1}},
            {"condition": {"type": "teleport"}},
            {"notify": {"webhooks": [{"url": "ftp://example.com", "secret": "s" * 20}]}},
            {"notify": {"webhooks": [{"url": "https://example.com", "secret": "short"}]}},
            {"notify": {"emails": ["ops@example.com"], "digest": True}},  # no interval to end
            {"scope": {"type": "galaxy", "id": "0" * 24}},
            {"name": ""},
            {"unknown": 1},
        ],
    )
    async def test_bad_input_is_refused_and_changes_nothing(
        self,
        change: dict[str, Any],
        client: httpx.AsyncClient,
        engine: AIOEngine,
        make_user: MakeUser,
    ) -> None:
        user = await signed_in(make_user, client)
        _, product, _, _ = await owned_device(engine, user)
        body = {
            "name": "r",
            "scope": {"type": "product", "id": str(product.id)},
            "severity": "minor",
            "condition": THRESHOLD,
            **change,
        }
        before = await db.collection(engine, AlertRule).count_documents({})
        resp = await client.post(f"{API}/alert-rules", json=body, headers=user.headers)
        assert resp.status_code == 422, resp.text
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert await db.collection(engine, AlertRule).count_documents({}) == before

    async def test_rules_per_scope_are_bounded(
        self,
        app_with: Any,
        make_settings: Any,
        engine: AIOEngine,
        make_user: MakeUser,
    ) -> None:
        from tests.fixtures.app import client_for

        async with app_with(make_settings(alert_rules_per_scope_max=2)) as app:
            async with client_for(app) as http:
                user = await signed_in(make_user, http)
                _, product, _, _ = await owned_device(engine, user)
                body = {
                    "name": "r",
                    "scope": {"type": "product", "id": str(product.id)},
                    "severity": "minor",
                    "condition": THRESHOLD,
                }
                codes = [
                    (
                        await http.post(f"{API}/alert-rules", json=body, headers=user.headers)
                    ).status_code
                    for _ in range(3)
                ]
        assert codes == [201, 201, 409]
        assert (
            await db.collection(engine, AlertRule).count_documents({"scope_id": str(product.id)})
            == 2
        )


class TestAlarms:
    async def test_list_ack_clear_and_counts(
        self, app: FastAPI, client: httpx.AsyncClient, engine: AIOEngine, make_user: MakeUser
    ) -> None:
        user = await signed_in(make_user, client)
        folder, product, device, key = await owned_device(engine, user)
        rule = await new_rule(engine, scope=product, condition=THRESHOLD)
        alarm_id = await stored_alarm(engine, rule, device)
        resp = await client.get(
            f"{API}/alarms?status=active&folder_id={folder.id}", headers=user.headers
        )
        assert [a["id"] for a in resp.json()["items"]] == [alarm_id]
        resp = await client.get(f"{API}/alarms/counts?folder_id={folder.id}", headers=user.headers)
        assert resp.status_code == 200, resp.text
        assert resp.json()["by_severity"]["major"]["active_unacknowledged"] == 1
        resp = await client.post(
            f"{API}/alarms/{alarm_id}/ack", json={"reason": "on it"}, headers=user.headers
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["acknowledged"] is True
        assert resp.json()["acknowledged_by"] == user.uid
        resp = await client.post(f"{API}/alarms/{alarm_id}/clear", headers=user.headers)
        assert resp.status_code == 200, resp.text
        cleared = resp.json()
        assert (cleared["status"], cleared["cleared_by"]) == ("cleared", user.uid)
        assert [h["action"] for h in cleared["history"]] == ["raised", "acknowledged", "cleared"]
        assert cleared["history"][1]["reason"] == "on it"
        resp = await client.post(f"{API}/alarms/{alarm_id}/clear", headers=user.headers)
        assert resp.status_code == 409
        resp = await client.get(f"{API}/alarms/counts?folder_id={folder.id}", headers=user.headers)
        assert resp.json()["by_severity"]["major"]["cleared_acknowledged"] == 1
        # A new raise after clearing is a new alarm (the active key was freed).
        second = await stored_alarm(engine, rule, device)
        assert second != alarm_id

    async def test_device_key_reads_its_own_alarms_only(
        self, client: httpx.AsyncClient, engine: AIOEngine, make_user: MakeUser
    ) -> None:
        user = await signed_in(make_user, client)
        _, product, device, key = await owned_device(engine, user)
        other, _ = await new_device(engine, owner=principal_of(user), product=product)
        rule = await new_rule(engine, scope=product, condition=THRESHOLD)
        mine = await stored_alarm(engine, rule, device)
        await stored_alarm(engine, rule, other)
        headers = {"X-Device-Key": key}
        resp = await client.get(f"{API}/alarms", headers=headers)
        assert resp.status_code == 200
        assert [a["id"] for a in resp.json()["items"]] == [mine]
        resp = await client.post(f"{API}/alarms/{mine}/ack", headers=headers)
        assert resp.status_code == 403
        resp = await client.get(f"{API}/alert-rules/{rule.id}", headers=headers)
        assert resp.status_code == 404

    async def test_bad_filters_are_refused(
        self, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        user = await signed_in(make_user, client)
        for query in ("status=burning", "severity=x", "device_id=zz", "cursor=nope"):
            resp = await client.get(f"{API}/alarms?{query}", headers=user.headers)
            assert resp.status_code == 422, (query, resp.text)
            assert resp.headers["content-type"].startswith("application/problem+json")
