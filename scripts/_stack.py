"""A throwaway local stack for the readings scripts: embedded MongoDB, redis-server and the API.

Everything listens on 127.0.0.1 on free ports and is stopped on exit (process groups). Devices
and their product are written straight into MongoDB in the shapes the catalog stores, so the
scripts need no Firebase sign-in.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bson import ObjectId  # noqa: E402
from pymongo import MongoClient  # noqa: E402

from app.auth import device_keys  # noqa: E402
from app.catalog.command_specs import CommandSpec  # noqa: E402
from app.core.models import utcnow  # noqa: E402
from tests.fixtures.servers import (  # noqa: E402
    ManagedProcess,
    free_port,
    make_workdir,
    start_mongodb,
    start_redis,
)

MASTER_TOKEN = "bench-master-token-" + "x" * 32
# The commands the seeded product declares (scripts/simulate_devices.py answers them).
SIM_COMMANDS: list[dict[str, Any]] = [
    {"name": "reboot", "params": {"type": "object"}, "ttl_s": 600, "result_expected": False},
    {
        "name": "set_interval",
        "params": {
            "type": "object",
            "properties": {"seconds": {"type": "integer", "minimum": 1, "maximum": 3600}},
            "required": ["seconds"],
        },
        "ttl_s": 600,
        "result_expected": True,
    },
]


@dataclass
class Device:
    """A seeded device: id and key."""

    id: str
    key: str


@dataclass
class Stack:
    """URLs of the running servers and the processes to stop."""

    mongodb_url: str
    redis_url: str
    db_name: str
    workdir: Path
    processes: list[ManagedProcess] = field(default_factory=list)
    # Base URL -> process id of each API started (its process group: uvicorn and its workers).
    pids: dict[str, int] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for an API process on this stack (settings are read from it)."""
        values = {
            **os.environ,
            "ENVIRONMENT": "development",
            "MIGRATIONS_AUTO_APPLY": "true",
            "MONGODB_URL": self.mongodb_url,
            "MONGODB_DB": self.db_name,
            "REDIS_URL": self.redis_url,
            "LOG_LEVEL": "WARNING",
            "LOG_JSON": "false",
            "MASTER_TOKEN": MASTER_TOKEN,
        }
        values.update(extra)
        return values

    def start_api(
        self, app: str = "app.main:create_app", *, as_module: bool = False, **env: str
    ) -> str:
        """Start uvicorn with `app` (a factory) in its own process; returns its base URL.

        `as_module` runs `python -m app` instead, as production does (its uvicorn settings:
        server pings, no socket compression, the graceful drain).
        """
        port = free_port()
        if as_module:
            argv = [sys.executable, "-m", "app"]
            env = {**env, "HOST": "127.0.0.1", "PORT": str(port)}
        else:
            argv = [sys.executable, "-m", "uvicorn", app, "--factory", "--host", "127.0.0.1"]
            argv += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
        proc = ManagedProcess(
            "api-app" if as_module else f"api-{app.split(':')[0]}",
            argv,
            port=port,
            cwd=ROOT,
            env=self.env(**env),
            log_dir=self.workdir,
        )

        def ready() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as resp:
                return bool(resp.status == 200)

        proc.start(timeout=60, ready=ready)
        self.processes.append(proc)
        url = f"http://127.0.0.1:{port}"
        assert proc.proc is not None
        self.pids[url] = proc.proc.pid
        return url

    def service_pids(self) -> dict[str, int]:
        """Process ids (group leaders) of the stack's own servers: `mongodb` (the embedded one;
        absent with an external `MONGODB_URL`) and `redis`."""
        names = {"nx-27017": "mongodb", "redis": "redis"}
        return {
            names[proc.name]: proc.proc.pid
            for proc in self.processes
            if proc.name in names and proc.proc is not None
        }

    def mongo(self) -> MongoClient[dict[str, Any]]:
        """A synchronous client on the stack's MongoDB."""
        return MongoClient(self.mongodb_url, tz_aware=True)

    def seed(self, count: int, *, ingest_limit_per_minute: int | None = None) -> list[Device]:
        """A product with temperature and humidity metrics and `count` devices of it."""
        now = utcnow()
        with self.mongo() as client:
            db = client[self.db_name]
            product_id = ObjectId()
            db["products"].insert_one(
                {
                    "_id": product_id,
                    "name": "Simulated thermometer",
                    "sku": f"SIM-{product_id}",
                    "folder_id": None,
                    "telemetry": {
                        "metrics": [
                            {"name": "temperature", "unit": "C", "min": -40, "max": 85},
                            {"name": "humidity", "unit": "%", "min": 0, "max": 100},
                        ],
                        "allow_unknown": False,
                        "ingest_limit_per_minute": ingest_limit_per_minute,
                    },
                    "commands": [CommandSpec.model_validate(c).stored() for c in SIM_COMMANDS],
                    "created_at": now,
                    "updated_at": now,
                }
            )
            devices, docs = [], []
            for i in range(count):
                key = device_keys.generate()
                device_id = ObjectId()
                docs.append(
                    {
                        "_id": device_id,
                        "name": f"sim-{i}",
                        "name_key": f"sim-{i}",
                        "serial": f"SIM-{device_id}",
                        "product_id": str(product_id),
                        "folder_id": None,
                        "folder_path": [],
                        "key_hash": key.key_hash,
                        "key_prefix": key.key_prefix,
                        "location": None,
                        "metadata": {},
                        "created_at": now,
                        "updated_at": now,
                        "presence": None,
                        "created_by": "simulator",
                    }
                )
                devices.append(Device(id=str(device_id), key=key.key))
            db["devices"].insert_many(docs)
        return devices

    def stop_last(self) -> None:
        """Stop the process started last (e.g. one API of several)."""
        self.processes.pop().stop()

    def stop(self) -> None:
        """Stop every process started here."""
        for proc in reversed(self.processes):
            proc.stop()


@contextlib.contextmanager
def local_stack() -> Iterator[Stack]:
    """Start MongoDB (embedded, or `MONGODB_URL` when set) and redis-server; stop them after."""
    workdir = make_workdir()
    processes: list[ManagedProcess] = []
    external = os.environ.get("MONGODB_URL")
    if external:
        mongodb_url = external
    else:
        mongo = start_mongodb(workdir)
        processes.append(mongo)
        mongodb_url = f"mongodb://127.0.0.1:{mongo.port}"
    redis = start_redis(workdir)
    processes.append(redis)
    stack = Stack(
        mongodb_url=mongodb_url,
        redis_url=f"redis://127.0.0.1:{redis.port}/0",
        db_name=f"sensorhub_bench_{int(time.time())}",
        workdir=workdir,
        processes=processes,
    )
    try:
        yield stack
    finally:
        if external:
            with contextlib.suppress(Exception), stack.mongo() as client:
                client.drop_database(stack.db_name)
        stack.stop()
