"""A crash loses no acknowledged reading: every 202 answer is in the database.

The API runs as a real uvicorn process, devices post to it over sockets, and the process is
killed with SIGKILL (no shutdown, no flush) while readings are in flight.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import urllib.request
from pathlib import Path
from typing import Any

import httpx

from app.core.config import Settings
from app.core.db import MongoDatabase
from tests.fixtures.readings import MakeDevice
from tests.fixtures.servers import ROOT, ManagedProcess, free_port, local_http

READINGS = 400
CONCURRENCY = 16


def start_api(settings: Settings, workdir: Path) -> tuple[ManagedProcess, str]:
    """The API in a process of its own, on the test run's MongoDB, Redis and database."""
    port = free_port()
    env = {
        **os.environ,
        "ENVIRONMENT": "development",
        "MONGODB_URL": settings.mongodb_url,
        "MONGODB_DB": settings.mongodb_db,
        "REDIS_URL": settings.redis_url,
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT_DEVICE_LIMIT": "1000000",
        # A long flush window: most readings are waiting in memory when the kill comes.
        "INGEST_FLUSH_INTERVAL_MS": "200",
        "INGEST_FLUSH_WHEN_IDLE": "false",
    }
    argv = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    proc = ManagedProcess("api-crash", argv, port=port, cwd=ROOT, env=env, log_dir=workdir)

    def ready() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as resp:
            return bool(resp.status == 200)

    proc.start(timeout=60, ready=ready)
    return proc, f"http://127.0.0.1:{port}"


class TestCrash:
    async def test_sigkill_mid_stream_loses_no_acknowledged_reading(
        self,
        settings: Settings,
        workdir: Path,
        make_device: MakeDevice,
        mongo_db: MongoDatabase,
    ) -> None:
        device = await make_device()
        proc, url = start_api(settings, workdir)
        acknowledged: set[int] = set()
        failed = 0
        try:
            queue: asyncio.Queue[int] = asyncio.Queue()
            for i in range(READINGS):
                queue.put_nowait(i)

            async with local_http(url, timeout=10) as http:

                async def device_loop() -> None:
                    nonlocal failed
                    while not queue.empty():
                        i = queue.get_nowait()
                        try:
                            resp = await http.post(
                                f"/api/v1/devices/{device.id}/readings",
                                json={"metrics": {"temperature": i}},
                                headers=device.headers,
                            )
                        except httpx.TransportError:
                            failed += 1
                            continue
                        if resp.status_code == 202:
                            acknowledged.add(i)

                async def killer() -> None:
                    while len(acknowledged) < READINGS // 4:
                        await asyncio.sleep(0.005)
                    assert proc.proc is not None
                    os.killpg(proc.proc.pid, signal.SIGKILL)

                await asyncio.gather(killer(), *(device_loop() for _ in range(CONCURRENCY)))
        finally:
            proc.stop()
        cursor = mongo_db["readings"].find({"meta.device_id": device.id}, {"m": 1})
        stored: list[dict[str, Any]] = await cursor.to_list(None)
        values = {int(doc["m"]["temperature"]) for doc in stored}
        assert failed > 0, "the kill came after the last request: nothing was in flight"
        assert acknowledged <= values
        assert len(stored) == len(values)  # and nothing was written twice
