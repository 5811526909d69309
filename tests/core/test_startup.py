"""Start-up waits for MongoDB and Redis, then fails with one clear line."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from asgi_lifespan import LifespanManager

from app.core import db, redis
from app.core.config import Settings
from app.core.startup import StartupError, wait_for_dependencies
from app.main import GC_THRESHOLDS, create_app
from tests.fixtures.servers import ROOT, free_port, start_redis


class TestRetry:
    async def test_gives_up_naming_the_dependency(
        self, make_settings: Callable[..., Settings]
    ) -> None:
        dead = free_port()
        settings = make_settings(redis_url=f"redis://:hunter2@127.0.0.1:{dead}/0")
        mongo, cache = db.create_client(settings), redis.create_redis(settings)
        with pytest.raises(StartupError) as caught:
            await wait_for_dependencies(settings, mongo_client=mongo, redis_client=cache)
        message = str(caught.value)
        assert message.startswith(f"Redis at redis://127.0.0.1:{dead} did not answer after 3")
        assert "\n" not in message
        assert "hunter2" not in message
        mongo.close()
        await cache.aclose()

    async def test_succeeds_when_dependency_comes_up_during_retries(
        self, make_settings: Callable[..., Settings], workdir: Path
    ) -> None:
        port = free_port()
        settings = make_settings(
            redis_url=f"redis://127.0.0.1:{port}/0",
            startup_retry_attempts=30,
            startup_retry_max_wait_s=0.3,
        )
        mongo, cache = db.create_client(settings), redis.create_redis(settings)
        loop = asyncio.get_running_loop()
        late = loop.run_in_executor(None, _start_late, workdir, port)
        try:
            await wait_for_dependencies(settings, mongo_client=mongo, redis_client=cache)
            assert await cache.ping()
        finally:
            server = await late
            server.stop()
            mongo.close()
            await cache.aclose()

    async def test_app_start_fails_when_redis_never_answers(
        self, make_settings: Callable[..., Settings]
    ) -> None:
        settings = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
        with pytest.raises(StartupError):
            async with LifespanManager(create_app(settings)):
                pass


class TestGarbageCollector:
    async def test_tuned_while_running_and_restored_after(
        self, make_settings: Callable[..., Settings]
    ) -> None:
        before = gc.get_threshold()
        async with LifespanManager(create_app(make_settings(gc_tuning=True))):
            assert gc.get_freeze_count() > 0
            assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == 0

    async def test_left_alone_when_switched_off(
        self, make_settings: Callable[..., Settings]
    ) -> None:
        before = gc.get_threshold(), gc.get_freeze_count()
        async with LifespanManager(create_app(make_settings(gc_tuning=False))):
            assert (gc.get_threshold(), gc.get_freeze_count()) == before


def _start_late(workdir: Path, port: int):  # type: ignore[no-untyped-def]
    import time

    time.sleep(0.2)  # the first connection attempts fail
    return start_redis(workdir, port=port)


def run_cli(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `python -m app` in an empty folder (no .env) with only `env` configured."""
    return subprocess.run(
        [sys.executable, "-m", "app"],
        cwd=cwd,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "ENVIRONMENT": "test", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


class TestCommandLine:
    def test_bad_mongodb_url_is_one_clear_line(self, tmp_path: Path) -> None:
        result = run_cli({"MONGODB_URL": "http://user:secret@db:27017"}, tmp_path)
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("configuration error: MONGODB_URL:")
        assert "secret" not in result.stderr

    def test_unreachable_mongodb_is_one_clear_line(self, tmp_path: Path) -> None:
        port = free_port()
        result = run_cli(
            {
                "MONGODB_URL": f"mongodb://127.0.0.1:{port}",
                "MONGODB_TIMEOUT_MS": "200",
                "STARTUP_RETRY_ATTEMPTS": "2",
                "STARTUP_RETRY_MAX_WAIT_S": "0.1",
            },
            tmp_path,
        )
        assert result.returncode != 0
        last = result.stderr.strip().splitlines()[-1]
        assert last == (
            f"startup failed: MongoDB at mongodb://127.0.0.1:{port} did not answer "
            "after 2 attempts (ServerSelectionTimeoutError)"
        )
        assert "Traceback" not in result.stderr
