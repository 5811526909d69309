"""Device contexts cached by one API process follow changes made through another.

Process B (uvicorn, a process of its own) has just taken readings from the device, so it
holds the device's context (product, telemetry schema, presence, known metric names) for up
to `READINGS_CONTEXT_CACHE_S` (300 s). A change made through process A must reach B's next
reading: announced changes (schema, product, deletion) within 100 ms; presence and metric
names, which are not announced, through the conditional writes they feed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from odmantic import AIOEngine

from app.catalog.models import Device
from app.catalog.telemetry import MetricSpec, TelemetrySchema
from app.core.config import Settings
from app.core.db import MongoDatabase
from app.core.services import services_of
from tests.fixtures.app import client_for
from tests.fixtures.catalog import new_device, new_product, user_principal
from tests.fixtures.worker import eventually

API = "/api/v1"
WITHIN_S = 0.1
CAP = 3  # READINGS_MAX_METRICS_PER_DEVICE of both processes in the metric-cap test
# Both processes refresh presence on every flush, so each reading exercises the write.
PROCESS_B_ENV = {"PRESENCE_THROTTLE_S": "0", "READINGS_MAX_METRICS_PER_DEVICE": str(CAP)}
OPEN = TelemetrySchema(allow_unknown=True)


@pytest.fixture
async def here(
    make_settings: Callable[..., Settings], app_with: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """Process A: an app with B's presence throttle and metric cap, its context feed live."""
    settings = make_settings(presence_throttle_s=0, readings_max_metrics_per_device=CAP)
    async with app_with(settings) as app:
        await eventually(lambda: services_of(app).device_contexts.live)
        async with client_for(app) as http:
            yield http


async def a_device(engine: AIOEngine, telemetry: TelemetrySchema = OPEN) -> tuple[Device, str]:
    """A device of a product of its own, and its key."""
    owner = user_principal()
    product = await new_product(engine, owner=owner, telemetry=telemetry)
    return await new_device(engine, owner=owner, product=product)


async def post(
    http: httpx.AsyncClient, device: Device, key: str, metrics: dict[str, Any]
) -> httpx.Response:
    """One reading from the device."""
    return await http.post(
        f"{API}/devices/{device.id}/readings",
        json={"metrics": metrics},
        headers={"X-Device-Key": key},
    )


async def accepted(http: httpx.AsyncClient, device: Device, key: str, **metrics: Any) -> int:
    """1 when one reading's values were stored, 0 when it was refused (422: every reading of
    the request refused); fails on any other answer."""
    resp = await post(http, device, key, metrics)
    assert resp.status_code in (202, 422), resp.text
    return int(resp.json()["accepted"]) if resp.status_code == 202 else 0


async def refused_within(
    http: httpx.AsyncClient, device: Device, key: str, **metrics: Any
) -> float:
    """Seconds until the reading is refused by the device's schema (polled without pause)."""
    started = time.monotonic()
    while True:
        taken = await accepted(http, device, key, **metrics)
        elapsed = time.monotonic() - started
        if not taken:
            return elapsed
        assert elapsed <= WITHIN_S, f"still accepted after {elapsed * 1000:.0f} ms"


@pytest.fixture
async def held_there(engine: AIOEngine, there: httpx.AsyncClient) -> tuple[Device, str]:
    """A device whose context process B holds: it has just taken two of its readings."""
    device, key = await a_device(engine)
    for _ in range(2):
        assert await accepted(there, device, key, humidity=40) == 1
    return device, key


STRICT = TelemetrySchema(allow_unknown=False, metrics=[MetricSpec(name="temperature")])


class TestAnnouncedChangesReachTheOtherProcess:
    @pytest.mark.parametrize("change", ["product schema", "device product"])
    async def test_the_next_reading_follows_the_new_schema(
        self,
        change: str,
        client: httpx.AsyncClient,
        there: httpx.AsyncClient,
        held_there: tuple[Device, str],
        master_headers: dict[str, str],
        engine: AIOEngine,
    ) -> None:
        """The product's schema changes, or the device moves to a product with another."""
        device, key = held_there
        if change == "product schema":
            path = f"{API}/products/{device.product_id}"
            body: dict[str, Any] = {"telemetry": STRICT.model_dump(mode="json")}
        else:
            strict = await new_product(engine, owner=user_principal(), telemetry=STRICT)
            path, body = f"{API}/devices/{device.id}", {"product_id": str(strict.id)}
        resp = await client.patch(path, json=body, headers=master_headers)
        assert resp.status_code == 200, resp.text
        assert await refused_within(there, device, key, humidity=41) <= WITHIN_S
        assert await accepted(there, device, key, temperature=20) == 1

    async def test_a_deleted_device_is_refused(
        self,
        client: httpx.AsyncClient,
        there: httpx.AsyncClient,
        held_there: tuple[Device, str],
        master_headers: dict[str, str],
    ) -> None:
        device, key = held_there
        resp = await client.delete(f"{API}/devices/{device.id}", headers=master_headers)
        assert resp.status_code == 204, resp.text
        started = time.monotonic()
        while (resp := await post(there, device, key, {"humidity": 41})).status_code == 202:
            assert time.monotonic() - started <= WITHIN_S, "the deleted device's key still works"
        assert resp.status_code == 401, resp.text


class TestPresenceHealsItself:
    async def test_a_stale_presence_never_undoes_a_heartbeat(
        self,
        here: httpx.AsyncClient,
        there: httpx.AsyncClient,
        held_there: tuple[Device, str],
        mongo_db: MongoDatabase,
    ) -> None:
        """B's cached presence goes stale when A records a heartbeat (a new status, then only
        a new detail): B's presence refreshes must never write the old status or detail
        back, and must resume (the failed one read the stored presence again)."""
        device, key = held_there

        async def stored() -> dict[str, Any]:
            doc = await mongo_db.devices.find_one({"_id": device.id}, {"presence": 1})
            assert doc is not None
            return dict(doc["presence"])

        for detail in ({"battery": 1}, {"battery": 2}):
            resp = await here.post(
                f"{API}/devices/{device.id}/heartbeat",
                json={"status": "error", "detail": detail},
                headers={"X-Device-Key": key},
            )
            assert resp.status_code == 200, resp.text
            beat = await stored()
            # The embedded server compares dates in update filters to the second: once the
            # beat's second is over, a refresh guarded by the status alone would match.
            await eventually(
                lambda beat=beat: time.time() >= beat["last_seen_ms"] // 1000 + 1, interval=0.05
            )

            async def refreshed_keeping_the_beat(
                detail: dict[str, int] = detail, beat: dict[str, Any] = beat
            ) -> bool:
                assert await accepted(there, device, key, humidity=41) == 1
                now = await stored()
                assert (now["reported_status"], now["detail"]) == ("error", detail), now
                return bool(now["last_seen_ms"] > beat["last_seen_ms"])

            # Poll (a refresh may wait for the next second), checking the beat after each.
            await eventually(refreshed_keeping_the_beat, timeout=5, interval=0.05)


class TestMetricCapHoldsAcrossProcesses:
    async def test_a_stale_registry_never_admits_a_name_past_the_cap(
        self,
        here: httpx.AsyncClient,
        there: httpx.AsyncClient,
        engine: AIOEngine,
        mongo_db: MongoDatabase,
    ) -> None:
        device, key = await a_device(engine)
        for _ in range(2):  # A caches the context with one known name
            assert await accepted(here, device, key, a=1) == 1
        # B registers the rest of the cap; A's cached copy still knows only `a`.
        assert await accepted(there, device, key, b=1) == 1
        assert await accepted(there, device, key, c=1) == 1
        resp = await post(here, device, key, {"d": 1})
        assert resp.status_code == 422, resp.text
        assert "too-many-metrics" in resp.text
        assert await accepted(here, device, key, b=2) == 1  # registered by B: admitted
        assert await accepted(there, device, key, e=1) == 0
        latest = await mongo_db.device_latest.find_one(
            {"_id": str(device.id)}, {"known": 1, "known_count": 1}
        )
        assert latest is not None
        assert sorted(latest["known"]) == ["a", "b", "c"]
        assert latest["known_count"] == CAP
