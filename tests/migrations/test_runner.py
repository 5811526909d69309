"""Schema migrations: a fresh database migrates from nothing, each step once, and the API
refuses to start behind its schema."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from odmantic import AIOEngine

from app.core import db
from app.core.config import Settings
from app.core.db import CollectionSpec, MongoDatabase, timeseries_mismatch
from app.migrations import runner
from app.migrations.runner import MigrationsPending
from app.migrations.steps import STEPS
from app.schema import readings_spec
from tests.fixtures.app import running_app
from tests.fixtures.servers import ROOT


@pytest.fixture
def fresh_settings(make_settings: Callable[..., Settings]) -> Settings:
    """Settings on a database nobody has used yet, without auto-applied migrations."""
    return make_settings(
        mongodb_db=f"sensorhub_fresh_{uuid.uuid4().hex[:10]}", migrations_auto_apply=False
    )


@pytest.fixture
async def fresh_engine(fresh_settings: Settings) -> AsyncIterator[AIOEngine]:
    client = db.create_client(fresh_settings)
    yield db.create_engine(client, fresh_settings)
    await client.drop_database(fresh_settings.mongodb_db)
    client.close()


class TestFreshDatabase:
    async def test_everything_pending_then_applied_once(
        self, fresh_engine: AIOEngine, fresh_settings: Settings
    ) -> None:
        assert [s.id for s in await runner.pending(fresh_engine)] == [s.id for s in STEPS]
        assert await runner.apply_pending(fresh_engine, fresh_settings) == [s.id for s in STEPS]
        statuses = await runner.status(fresh_engine)
        assert all(s.applied_at is not None for s in statuses)
        assert await runner.apply_pending(fresh_engine, fresh_settings) == []
        indexes = await db.database(fresh_engine)["readings"].index_information()
        assert any(spec["key"][0][0] == "meta.device_id" for spec in indexes.values())

    async def test_two_processes_never_run_a_step_twice(
        self, fresh_engine: AIOEngine, fresh_settings: Settings
    ) -> None:
        other_client = db.create_client(fresh_settings)
        try:
            other = db.create_engine(other_client, fresh_settings)
            first, second = await asyncio.gather(
                runner.apply_pending(fresh_engine, fresh_settings),
                runner.apply_pending(other, fresh_settings),
            )
        finally:
            other_client.close()
        assert sorted(first + second) == sorted(s.id for s in STEPS)
        coll = db.database(fresh_engine)["schema_migrations"]
        assert await coll.count_documents({}) == len(STEPS)


class TestStartUp:
    async def test_refused_while_migrations_are_pending(self, fresh_settings: Settings) -> None:
        with pytest.raises(MigrationsPending, match="python -m app migrate"):
            async with running_app(fresh_settings):
                pass

    async def test_auto_apply_migrates_at_start(
        self, fresh_settings: Settings, fresh_engine: AIOEngine
    ) -> None:
        settings = fresh_settings.model_copy(update={"migrations_auto_apply": True})
        async with running_app(settings):
            pass
        assert await runner.pending(fresh_engine) == []


class TestCommandLine:
    def test_status_then_migrate_on_a_fresh_database(
        self, fresh_settings: Settings, tmp_path: Path
    ) -> None:
        env = {
            "PATH": os.environ["PATH"],
            "PYTHONPATH": str(ROOT),
            "ENVIRONMENT": "test",
            "MONGODB_URL": fresh_settings.mongodb_url,
            "MONGODB_DB": fresh_settings.mongodb_db,
            "REDIS_URL": fresh_settings.redis_url,
        }

        def run(*args: str) -> str:
            result = subprocess.run(
                [sys.executable, "-m", "app", *args],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 0, result.stderr
            return result.stdout

        before = run("migrate", "--status")
        assert before.count("pending") == len(STEPS)
        applied = run("migrate")
        assert applied.count("applied  ") == len(STEPS)
        after = run("migrate", "--status")
        assert "pending" not in after
        assert all(step.id in after for step in STEPS)


class TestLatestAtMs:
    async def test_old_latest_values_get_at_ms(
        self, fresh_engine: AIOEngine, fresh_settings: Settings
    ) -> None:
        database: MongoDatabase = db.database(fresh_engine)
        ts = datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
        await database["device_latest"].insert_one(
            {"_id": "d1", "m": {"t": {"ts": ts, "v": 1.5}}, "newest": {"ts": ts}}
        )
        await runner.apply_pending(fresh_engine, fresh_settings)
        doc = await database["device_latest"].find_one({"_id": "d1"})
        assert doc is not None
        assert doc["m"]["t"]["at_ms"] == int(ts.timestamp() * 1000)
        assert doc["m"]["t"]["v"] == 1.5
        assert doc["newest"]["at_ms"] == int(ts.timestamp() * 1000)


class TestReadingsCollectionCheck:
    """The start-up check, on `listCollections` entries as MongoDB 7 returns them."""

    def entry(self, **timeseries: str) -> dict[str, object]:
        options = {"timeField": "ts", "metaField": "meta", "granularity": "seconds", **timeseries}
        return {"name": "readings", "type": "timeseries", "options": {"timeseries": options}}

    def spec(self, settings: Settings) -> CollectionSpec:
        return readings_spec(settings)

    def test_the_expected_collection_passes(self, settings: Settings) -> None:
        assert timeseries_mismatch(self.entry(), self.spec(settings)) is None

    @pytest.mark.parametrize(
        ("field", "value"),
        [("timeField", "time"), ("metaField", "metadata"), ("granularity", "hours")],
    )
    def test_another_layout_is_one_clear_line(
        self, settings: Settings, field: str, value: str
    ) -> None:
        problem = timeseries_mismatch(self.entry(**{field: value}), self.spec(settings))
        assert problem is not None
        assert f"{field}={value!r}" in problem
        assert "\n" not in problem

    async def test_start_up_accepts_what_this_server_made(
        self, mongo_db: MongoDatabase, settings: Settings
    ) -> None:
        # The shared app migrated this database: the check passes on whatever this server is.
        await db.check_timeseries(mongo_db, readings_spec(settings))


class TestAlarmClosedMs:
    async def test_cleared_alarms_keep_their_clock_and_the_old_index_goes(
        self, fresh_engine: AIOEngine, fresh_settings: Settings
    ) -> None:
        alarms = db.database(fresh_engine)["alarms"]
        await alarms.insert_many(
            [
                {"_id": "cleared", "status": "cleared", "cleared_ms": 1_700_000_000_000},
                {"_id": "active", "status": "active", "cleared_ms": None},
            ]
        )
        await alarms.create_index("cleared_ms")
        await runner.apply_pending(fresh_engine, fresh_settings)
        cleared = await alarms.find_one({"_id": "cleared"})
        active = await alarms.find_one({"_id": "active"})
        assert cleared is not None
        assert active is not None
        assert cleared["closed_ms"] == 1_700_000_000_000
        assert active.get("closed_ms") is None
        keys = [list(info["key"]) for info in (await alarms.index_information()).values()]
        assert [("cleared_ms", 1)] not in keys
        assert [("closed_ms", 1)] in keys
