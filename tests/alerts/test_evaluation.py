"""Evaluation through ingest: readings posted over HTTP raise and clear alarms once stored."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from bson import ObjectId
from fastapi import FastAPI
from odmantic import AIOEngine
from pymongo.errors import DuplicateKeyError

from app.alerts.cache import RuleCache
from app.alerts.evaluator import AlertEvaluator
from app.alerts.models import Severity
from app.alerts.notifier import Notifier
from app.catalog.models import Product
from app.core import db
from app.core.db import database
from app.core.services import services_of
from app.readings.batcher import DeviceFlush
from tests.fixtures.alerts import alarms_of, new_rule, wait_for
from tests.fixtures.readings import MakeDevice, TestDevice

BASE = datetime(2026, 1, 1, tzinfo=UTC)


def at(s: float) -> str:
    """A reading time `s` seconds after BASE."""
    return (BASE + timedelta(seconds=s)).isoformat()


async def post(
    client: httpx.AsyncClient, device: TestDevice, values: list[tuple[float, float]]
) -> None:
    """Post temperature readings given as (seconds, value)."""
    body = {"readings": [{"ts": at(s), "metrics": {"temperature": v}} for s, v in values]}
    resp = await client.post(
        f"/api/v1/devices/{device.id}/readings", json=body, headers=device.headers
    )
    assert resp.status_code == 202, resp.text


async def product_of(engine: AIOEngine, device: TestDevice) -> Product:
    """The device's product."""
    product = await db.find_by_id(engine, Product, device.context.product_id)
    assert product is not None
    return product


async def settle(app: FastAPI) -> None:
    """Wait until the batcher's listeners have finished (evaluation done)."""
    batcher = services_of(app).batcher

    async def idle() -> bool:
        return batcher.queued == 0 and not batcher._notifications and not batcher._flushes

    await wait_for(idle, what="evaluation to finish")


class TestThresholdThroughIngest:
    async def test_raise_repeat_and_clear(
        self, app: FastAPI, client: httpx.AsyncClient, engine: AIOEngine, make_device: MakeDevice
    ) -> None:
        device = await make_device()
        product = await product_of(engine, device)
        await new_rule(
            engine,
            scope=product,
            condition={"type": "threshold", "metric": "temperature", "op": ">", "value": 30},
        )
        await services_of(app).alert_rules.changed()
        await post(client, device, [(1, 20), (2, 31), (3, 35)])
        await settle(app)
        [alarm] = await alarms_of(engine, device_id=device.id)
        assert (alarm["status"], alarm["count"], alarm["last_value"]) == ("active", 2, 35)
        assert alarm["first_value"] == 31
        await post(client, device, [(4, 10)])
        await settle(app)
        [alarm] = await alarms_of(engine, device_id=device.id)
        assert alarm["status"] == "cleared"
        assert alarm["active_key"].startswith("cleared:")
        assert alarm["cleared_by"] == "system"
        assert alarm["cleared_reason"]

    async def test_flapping_with_hysteresis_makes_one_alarm(
        self, app: FastAPI, client: httpx.AsyncClient, engine: AIOEngine, make_device: MakeDevice
    ) -> None:
        device = await make_device()
        await new_rule(
            engine,
            scope=await product_of(engine, device),
            condition={
                "type": "threshold",
                "metric": "temperature",
                "op": ">",
                "value": 30,
                "hysteresis": 1,
            },
        )
        await services_of(app).alert_rules.changed()
        for batch in range(4):
            await post(
                client, device, [(batch * 10 + i, 30.4 if i % 2 else 29.6) for i in range(10)]
            )
        await settle(app)
        alarms = await alarms_of(engine, device_id=device.id)
        assert len(alarms) == 1
        assert alarms[0]["status"] == "active"
        assert alarms[0]["count"] == 20

    async def test_one_rule_lookup_per_flush(
        self, app: FastAPI, client: httpx.AsyncClient, engine: AIOEngine, make_device: MakeDevice
    ) -> None:
        """Twenty rules on the product: evaluating a batch costs one lookup, then none."""
        device = await make_device()
        product = await product_of(engine, device)
        for i in range(20):
            await new_rule(
                engine,
                scope=product,
                condition={
                    "type": "threshold",
                    "metric": "temperature",
                    "op": ">",
                    "value": 100 + i,
                },
            )
        cache = services_of(app).alert_rules
        await cache.changed()
        assert cache.live
        before = cache.lookups
        await post(client, device, [(i, 20) for i in range(50)])
        await settle(app)
        assert cache.lookups == before + 1
        await post(client, device, [(100 + i, 20) for i in range(50)])
        await settle(app)
        assert cache.lookups == before + 1  # cached
        # A rule change clears the cache in every process (here: through Redis as well).
        await cache.changed()
        await post(client, device, [(200, 20)])
        await settle(app)
        assert cache.lookups == before + 2


class TestMetrics:
    async def test_evaluations_transitions_and_lag_are_exported(
        self, app: FastAPI, client: httpx.AsyncClient, engine: AIOEngine, make_device: MakeDevice
    ) -> None:
        def value(text: str, line_start: str) -> float:
            found = [float(x.split()[-1]) for x in text.splitlines() if x.startswith(line_start)]
            return sum(found)

        evaluated = 'sensorhub_alert_evaluations_total{condition="threshold"}'
        raised = 'sensorhub_alarm_transitions_total{severity="critical",transition="raised"}'
        before = (await client.get("/metrics")).text
        device = await make_device()
        await new_rule(
            engine,
            scope=await product_of(engine, device),
            condition={"type": "threshold", "metric": "temperature", "op": ">", "value": 30},
            severity=Severity.CRITICAL,
        )
        await services_of(app).alert_rules.changed()
        await post(client, device, [(1, 31), (2, 20)])
        await settle(app)
        after = (await client.get("/metrics")).text
        assert value(after, evaluated) == value(before, evaluated) + 2
        assert value(after, raised) == value(before, raised) + 1
        assert value(after, "sensorhub_alert_evaluation_lag_seconds_count") > 0


class TestForSAcrossRestart:
    async def test_restart_in_the_middle_of_a_for_s(
        self, app_with: Any, settings: Any, engine: AIOEngine, make_device: MakeDevice
    ) -> None:
        device = await make_device()
        rule = await new_rule(
            engine,
            scope=await product_of(engine, device),
            condition={
                "type": "threshold",
                "metric": "temperature",
                "op": ">",
                "value": 30,
                "for_s": 60,
            },
        )
        from tests.fixtures.app import client_for

        async with app_with(settings) as first, client_for(first) as http:
            await post(http, device, [(0, 31), (30, 32)])
            await settle(first)
            # Stored at once, not only at shutdown: a crash here would not lose the for_s.
            state = await database(engine)["alert_states"].find_one(
                {"_id": f"{rule.id}:{device.id}"}
            )
            assert state is not None
            assert state["pending_ms"] == int(BASE.timestamp() * 1000)
        assert await alarms_of(engine, device_id=device.id) == []
        async with app_with(settings) as second, client_for(second) as http:
            await post(http, device, [(61, 33)])
            await settle(second)
        [alarm] = await alarms_of(engine, device_id=device.id)
        assert alarm["status"] == "active"
        assert alarm["raised_ms"] == alarm["last_ms"]


class TestRacingProcesses:
    async def test_two_evaluators_make_one_alarm(
        self, app: FastAPI, engine: AIOEngine, make_device: MakeDevice
    ) -> None:
        """Two evaluators with their own caches and state (as two API processes have) see the
        same readings at once: the unique active key leaves one alarm."""
        device = await make_device()
        product = await product_of(engine, device)
        await new_rule(
            engine,
            scope=product,
            condition={"type": "threshold", "metric": "temperature", "op": ">", "value": 30},
        )

        def evaluator() -> AlertEvaluator:
            return AlertEvaluator(
                engine,
                rules=RuleCache(ttl_s=0, rate_points_max=100),
                notifier=Notifier(engine, None, None),
                state_flush_s=60,
                state_cache_max=1000,
            )

        docs = [
            {
                "ts": BASE + timedelta(seconds=i),
                "meta": {"device_id": device.id, "product_id": str(product.id)},
                "m": {"temperature": 40 + i},
            }
            for i in range(3)
        ]
        flush = [DeviceFlush(device.id, str(product.id), docs)]
        for _ in range(5):
            await asyncio.gather(*(evaluator()(flush) for _ in range(4)))
        alarms = await alarms_of(engine, device_id=device.id)
        assert len(alarms) == 1
        assert alarms[0]["count"] >= 3
        # What guarantees it where upserts do race (real MongoDB): a second document with the
        # same active key cannot exist.
        duplicate = {**alarms[0], "_id": ObjectId()}
        with pytest.raises(DuplicateKeyError):
            await database(engine)["alarms"].insert_one(duplicate)


class TestFleetStatistics:
    async def test_active_alarms_are_counted_by_severity(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        engine: AIOEngine,
        make_device: MakeDevice,
        master_headers: dict[str, str],
    ) -> None:
        device = await make_device()
        product = await product_of(engine, device)
        await new_rule(
            engine,
            scope=product,
            severity=Severity.CRITICAL,
            condition={"type": "threshold", "metric": "temperature", "op": ">", "value": 30},
        )
        await services_of(app).alert_rules.changed()
        await post(client, device, [(1, 40)])
        await settle(app)
        resp = await client.get(
            "/api/v1/stats", params={"product_id": str(product.id)}, headers=master_headers
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["active_alarms_by_severity"]["critical"] == 1
        assert resp.json()["active_alarms_by_severity"]["major"] == 0
