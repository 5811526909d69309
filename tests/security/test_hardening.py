"""One test (or class) per item of the hardening review that the attack journeys do not cover.

Items 1, 2, 3, 5, 9 and 10 are in test_attacks.py.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import dataclasses
import io
import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from motor.motor_asyncio import AsyncIOMotorClient
from odmantic import AIOEngine
from pydantic import ValidationError
from pymongo import MongoClient, UpdateOne

from app.catalog import crud
from app.catalog.repair import repair_tree
from app.core.config import Settings
from app.core.db import MongoDatabase
from app.core.services import services_of
from app.readings import repository
from tests.fixtures.app import running_app
from tests.fixtures.catalog import MASTER, new_device, new_folder, new_product
from tests.fixtures.identities import TEST_MASTER_TOKEN, bearer
from tests.fixtures.readings import MakeDevice
from tests.fixtures.servers import ROOT, start_redis
from tests.security.conftest import HardenedApp, client_from

API = "/api/v1"
MASTER_HEADERS = bearer(TEST_MASTER_TOKEN)
NOW = datetime.now(UTC).replace(microsecond=0)
# A well-formed history cursor whose time stamp is so far out that the platform refuses it
# (OSError, not ValueError, on Linux).
HUGE_TS_CURSOR = (
    base64.urlsafe_b64encode(json.dumps({"t": 10**20, "i": "a" * 24, "d": True}).encode())
    .decode()
    .rstrip("=")
)


def reading(device: Any, ts: datetime, value: float) -> dict[str, Any]:
    """A reading document as ingest stores it."""
    meta = {"device_id": device.id, "product_id": device.context.product_id}
    return {"ts": ts, "meta": meta, "m": {"temperature": value}}


class TestItem04LatestValuesIsolated:
    """One device's failing latest-values update never drops another device's."""

    async def test_a_failing_update_does_not_drop_the_ones_after_it(
        self,
        engine: AIOEngine,
        make_device: MakeDevice,
        mongo_db: MongoDatabase,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        broken, fine = await make_device(), await make_device()
        await mongo_db["device_latest"].insert_one({"_id": broken.id, "m": "corrupt"})
        # An update the server refuses (both servers refuse `$inc` on a string), queued
        # before another device's: a flush of mixed devices in one bulk write.
        refused = UpdateOne({"_id": broken.id}, {"$inc": {"m": 1}})
        ts = NOW - timedelta(minutes=1)
        good = repository.latest_offer_all(fine.id, {"temperature": {"ts": ts, "v": 2.0}})
        await repository.write_latest(engine, [repository.latest_ensure(fine.id, "p")])
        caplog.set_level(logging.ERROR, logger="app.readings.repository")
        await repository.write_latest(engine, [refused, good])
        latest = await mongo_db["device_latest"].find_one({"_id": fine.id})
        assert latest["m"]["temperature"]["v"] == 2.0
        # Logged in a bounded form: counts and codes, not the server's whole answer.
        assert all(len(r.getMessage()) < 200 for r in caplog.records)
        assert any(getattr(r, "failed", 0) == 1 for r in caplog.records)


class TestItem06IngestLimitCap:
    """A product may not raise its devices' ingest limit above RATE_LIMIT_DEVICE_MAX."""

    @pytest.mark.parametrize("method", ["create", "update"])
    async def test_above_the_cap_is_422_and_changes_nothing(
        self, client: httpx.AsyncClient, engine: AIOEngine, settings: Settings, method: str
    ) -> None:
        too_many = settings.rate_limit_device_max + 1
        telemetry = {"ingest_limit_per_minute": too_many}
        if method == "create":
            resp = await client.post(
                f"{API}/products",
                json={"name": "p", "sku": "cap-1", "telemetry": telemetry},
                headers=MASTER_HEADERS,
            )
        else:
            product = await new_product(engine, owner=MASTER)
            resp = await client.patch(
                f"{API}/products/{product.id}",
                json={"telemetry": telemetry},
                headers=MASTER_HEADERS,
            )
        assert resp.status_code == 422
        assert resp.json()["type"] == "/problems/ingest-limit-too-high"
        assert "RATE_LIMIT_DEVICE_MAX" in resp.json()["detail"]


class TestItem07IdempotencyStoreBounded:
    """A stored answer keeps at most MAX_ERRORS_REPORTED errors, and the count."""

    async def test_a_batch_of_refused_readings_stores_a_bounded_answer(
        self, client: httpx.AsyncClient, make_device: MakeDevice, mongo_db: MongoDatabase
    ) -> None:
        device = await make_device()
        old = (NOW - timedelta(days=400)).isoformat()
        readings = [{"ts": old, "metrics": {"temperature": 1}}] * 150
        readings.append({"metrics": {"temperature": 2}})
        resp = await client.post(
            f"{API}/devices/{device.id}/readings",
            json={"readings": readings},
            headers={**device.headers, "Idempotency-Key": "bounded-1"},
        )
        assert resp.status_code == 202, resp.text
        assert (resp.json()["accepted"], resp.json()["rejected"]) == (1, 150)
        assert len(resp.json()["errors"]) == 100
        stored = await mongo_db["idempotency_keys"].find_one({"key": "bounded-1"})
        assert len(stored["response"]["errors"]) == 100
        assert stored["response"]["rejected"] == 150


class TestItem08ReadBounds:
    """History, aggregates and exports have a longest span; every read a time limit."""

    @pytest.mark.parametrize(
        ("suffix", "setting"),
        [
            ("readings", "READINGS_HISTORY_MAX_SPAN_DAYS"),
            ("readings/aggregate", "READINGS_AGGREGATE_MAX_SPAN_DAYS"),
            ("readings/export", "READINGS_EXPORT_MAX_SPAN_DAYS"),
        ],
    )
    async def test_span_over_the_setting_is_422_naming_it(
        self, client: httpx.AsyncClient, make_device: MakeDevice, suffix: str, setting: str
    ) -> None:
        device = await make_device()
        params = {"start": "2000-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}
        if suffix.endswith("aggregate"):
            params["interval"] = "1mo"
        resp = await client.get(
            f"{API}/devices/{device.id}/{suffix}", params=params, headers=MASTER_HEADERS
        )
        assert resp.status_code == 422, resp.text
        assert setting in resp.json()["detail"]

    async def test_a_read_over_the_time_limit_is_503_not_a_hung_worker(
        self,
        hardened_app: HardenedApp,
        make_device: MakeDevice,
        engine: AIOEngine,
        settings: Settings,
    ) -> None:
        device = await make_device()
        docs = [
            {
                "ts": NOW - timedelta(seconds=i),
                "meta": {"device_id": device.id, "product_id": device.context.product_id},
                "m": {"temperature": float(i)},
            }
            for i in range(3000)
        ]
        await engine.database["readings"].insert_many(docs)
        async with hardened_app() as app, client_from(app) as http:
            # The same app, its database client now allowed 1 ms per operation.
            slow = AsyncIOMotorClient(settings.mongodb_url, tz_aware=True, timeoutMS=1)
            services = services_of(app)
            app.services = dataclasses.replace(
                services, engine=AIOEngine(client=slow, database=settings.mongodb_db)
            )
            try:
                resp = await http.get(
                    f"{API}/devices/{device.id}/readings/aggregate",
                    params={"interval": "1h"},
                    headers=MASTER_HEADERS,
                )
            finally:
                app.services = services
                slow.close()
        assert resp.status_code == 503, resp.text
        assert resp.json()["type"] == "/problems/database-unavailable"
        assert resp.headers["Retry-After"]


class TestItem11CsvInjection:
    """Device strings are exported as data, never as spreadsheet formulas."""

    async def test_formula_cells_are_escaped(
        self, client: httpx.AsyncClient, make_device: MakeDevice
    ) -> None:
        device = await make_device(metrics=[{"name": "note", "type": "string"}])
        hostile = ['=HYPERLINK("http://evil.example","x")', "+1", "-2+3", "@SUM(A1)", "\tx"]
        for i, text in enumerate(hostile):
            ts = (NOW - timedelta(minutes=10 - i)).isoformat()
            resp = await client.post(
                f"{API}/devices/{device.id}/readings",
                json={"ts": ts, "metrics": {"note": text}},
                headers=device.headers,
            )
            assert resp.status_code == 202, resp.text
        export = await client.get(
            f"{API}/devices/{device.id}/readings/export",
            params={"metrics": "note"},
            headers=MASTER_HEADERS,
        )
        rows = list(csv.DictReader(io.StringIO(export.text)))
        assert [r["note"] for r in rows] == ["'" + text for text in hostile]


class TestItem12FailClosedEnvironment:
    """Without ENVIRONMENT, the service is in production and its checks apply."""

    def test_default_is_production_and_refuses_missing_secrets(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # The test process itself points firebase-admin at the emulator; a fresh production
        # process would not.
        monkeypatch.delenv("FIREBASE_AUTH_EMULATOR_HOST", raising=False)
        monkeypatch.delenv("ENVIRONMENT", raising=False)
        assert Settings.model_fields["environment"].default == "production"
        with pytest.raises(ValidationError, match="JWT_SECRET must be set"):
            Settings(_env_file=None)  # type: ignore[call-arg]

    def test_example_and_compose_run_in_production(self) -> None:
        assert "\nENVIRONMENT=production\n" in (ROOT / ".env.example").read_text()
        assert "ENVIRONMENT: production" in (ROOT / "docker-compose.yml").read_text()
        assert "export ENVIRONMENT=development\n" in (ROOT / "scripts/dev.sh").read_text()


class TestItem13NoServerErrorsOnHostileInput:
    """Inputs that used to end in a 500 get a 4xx."""

    @pytest.mark.parametrize(
        ("suffix", "params"),
        [
            (
                "readings",
                {"cursor": HUGE_TS_CURSOR},
            ),
            (
                "readings/aggregate",
                {
                    "start": "0001-01-01T00:00:00Z",
                    "end": "0001-01-02T00:00:00Z",
                    "tz": "Etc/GMT-14",
                    "interval": "1d",
                },
            ),
            ("readings/aggregate", {"interval": "999999mo"}),
            ("readings", {"end": "0001-01-01T00:00:00Z"}),
        ],
    )
    async def test_query_extremes_are_422(
        self, client: httpx.AsyncClient, make_device: MakeDevice, suffix: str, params: Any
    ) -> None:
        device = await make_device()
        resp = await client.get(
            f"{API}/devices/{device.id}/{suffix}", params=params, headers=MASTER_HEADERS
        )
        assert resp.status_code == 422, resp.text

    @pytest.mark.parametrize("collection", ["products", "devices"])
    async def test_nul_in_a_prefix_search_is_not_a_server_error(
        self, client: httpx.AsyncClient, collection: str
    ) -> None:
        resp = await client.get(
            f"{API}/{collection}", params={"q": "a\x00b"}, headers=MASTER_HEADERS
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["items"] == []
        # Real MongoDB refuses a NUL byte inside a pattern (the embedded server does not):
        # the search escapes it.
        assert "\x00" not in crud.prefix_regex("a\x00b")["$regex"]

    @pytest.mark.parametrize("key", ["$where", "a.b", "nul\x00"])
    async def test_heartbeat_detail_keys_mongodb_refuses_are_422(
        self, client: httpx.AsyncClient, make_device: MakeDevice, key: str
    ) -> None:
        device = await make_device()
        resp = await client.post(
            f"{API}/devices/{device.id}/heartbeat",
            json={"detail": {key: 1}},
            headers=device.headers,
        )
        assert resp.status_code == 422, resp.text

    async def test_metric_name_with_a_trailing_newline_is_refused(
        self, client: httpx.AsyncClient, make_device: MakeDevice, mongo_db: MongoDatabase
    ) -> None:
        device = await make_device()
        resp = await client.post(
            f"{API}/devices/{device.id}/readings",
            json={"metrics": {"temp\n": 1}},
            headers=device.headers,
        )
        assert resp.status_code == 422, resp.text
        assert await mongo_db["readings"].count_documents({"meta.device_id": device.id}) == 0


class TestItem14AccessLogWithoutInvitees:
    """The access log records the route template, never the raw path."""

    async def test_invitee_email_is_not_logged(
        self, client: httpx.AsyncClient, engine: AIOEngine, caplog: pytest.LogCaptureFixture
    ) -> None:
        folder = await new_folder(engine, owner=MASTER)
        caplog.set_level(logging.INFO, logger="app.access")
        resp = await client.put(
            f"{API}/folders/{folder.id}/permissions/secret.person@example.com",
            json={"role": "viewer"},
            headers=MASTER_HEADERS,
        )
        assert resp.status_code == 200, resp.text
        logged = [r for r in caplog.records if r.name == "app.access"]
        assert logged
        assert all("secret.person" not in str(vars(r)) for r in logged)
        assert any(
            getattr(r, "route", "") == "/api/v1/folders/{resource_id}/permissions/{user_id}"
            for r in logged
        )


class TestItem15RevocationBroadcast:
    """A key change that cannot reach every process is reported, not silently cached on."""

    async def test_rotation_without_redis_answers_503(
        self,
        make_settings: Callable[..., Settings],
        engine: AIOEngine,
        tmp_path: Path,
    ) -> None:
        redis = start_redis(tmp_path)
        product = await new_product(engine, owner=MASTER)
        device, _ = await new_device(engine, owner=MASTER, product=product)
        settings = make_settings(redis_url=f"redis://127.0.0.1:{redis.port}/0")
        try:
            async with running_app(settings) as app, client_from(app) as http:
                redis.stop()
                resp = await http.post(f"{API}/devices/{device.id}/keys", headers=MASTER_HEADERS)
        finally:
            redis.stop()
        assert resp.status_code == 503, resp.text
        assert resp.json()["type"] == "/problems/key-revocation-pending"


class TestItem10RepairJob:
    """Without transactions a crash or a race can leave stale paths: the beat's job mends them."""

    async def test_stale_ancestors_cycles_and_item_paths_are_mended(
        self, app: FastAPI, settings: Settings
    ) -> None:
        # A database of its own: the job reads every folder.
        name = f"repair_{uuid.uuid4().hex[:10]}"
        client = services_of(app).mongo_client
        engine = AIOEngine(client=client, database=name)
        try:
            top = await new_folder(engine, owner=MASTER)
            mid = await new_folder(engine, owner=MASTER, parent=top)
            low = await new_folder(engine, owner=MASTER, parent=mid)
            product = await new_product(engine, owner=MASTER, folder=low)
            a = await new_folder(engine, owner=MASTER)
            b = await new_folder(engine, owner=MASTER, parent=a)
            folders = engine.database["folders"]
            # A move of `mid` to the top level that stopped after its own document...
            await folders.update_one(
                {"_id": mid.id}, {"$set": {"parent_id": None, "ancestors": []}}
            )
            # ...and two crossing moves without a transaction: a cycle.
            await folders.update_one(
                {"_id": a.id}, {"$set": {"parent_id": str(b.id), "ancestors": [str(b.id)]}}
            )
            sync: MongoClient[dict[str, Any]] = MongoClient(settings.mongodb_url, tz_aware=True)
            try:
                counts = await asyncio.to_thread(repair_tree, sync[name], since=None)
            finally:
                sync.close()
            assert counts["cycles"] == 1
            low_now = await folders.find_one({"_id": low.id})
            assert low_now["ancestors"] == [str(mid.id)]
            product_now = await engine.database["products"].find_one({"_id": product.id})
            assert product_now["folder_path"] == [str(mid.id), str(low.id)]
            a_now = await folders.find_one({"_id": a.id})
            b_now = await folders.find_one({"_id": b.id})
            assert not (str(b.id) in a_now["ancestors"] and str(a.id) in b_now["ancestors"])
            assert [a_now["ancestors"], b_now["ancestors"]] in (
                [[], [str(a.id)]],
                [[str(b.id)], []],
            )
        finally:
            await client.drop_database(name)
