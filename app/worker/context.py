"""Per-process clients of a worker: made lazily on first use, remade after a fork."""

from __future__ import annotations

import os
import threading
from typing import Any

from odmantic import SyncEngine
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.database import Database
from redis import Redis

from app.core.config import Settings

SyncDatabase = Database[dict[str, Any]]
SyncCollection = Collection[dict[str, Any]]


class WorkerContext:
    """Settings plus the pymongo client, ODMantic `SyncEngine` and Redis client of a process.

    Nothing connects at import or when the Celery app is built (the API builds one too, only
    to enqueue); clients are made on first use in the process that uses them, because pymongo
    clients must not cross a fork (Celery's prefork pool).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._engine: SyncEngine | None = None
        self._redis: Redis | None = None

    def _ensure(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            client: MongoClient[dict[str, Any]] = MongoClient(
                self.settings.mongodb_url,
                tz_aware=True,
                serverSelectionTimeoutMS=self.settings.mongodb_timeout_ms,
                connectTimeoutMS=self.settings.mongodb_timeout_ms,
                appname="sensorhub-worker",
            )
            self._engine = SyncEngine(client=client, database=self.settings.mongodb_db)
            self._redis = Redis.from_url(
                self.settings.redis_url,
                socket_timeout=max(self.settings.redis_timeout_s, 2.0),
                socket_connect_timeout=max(self.settings.redis_timeout_s, 2.0),
            )
            self._pid = os.getpid()

    @property
    def engine(self) -> SyncEngine:
        """The ODMantic sync engine of this process."""
        self._ensure()
        assert self._engine is not None
        return self._engine

    @property
    def db(self) -> SyncDatabase:
        """The raw pymongo database (cleanup works on collections by name)."""
        database: SyncDatabase = self.engine.database
        return database

    @property
    def redis(self) -> Redis:
        """The sync Redis client of this process (locks, task outcome counters)."""
        self._ensure()
        assert self._redis is not None
        return self._redis

    def close(self) -> None:
        """Close the clients of this process (tests; worker shutdown)."""
        with self._lock:
            if self._engine is not None and self._pid == os.getpid():
                self._engine.client.close()
            if self._redis is not None and self._pid == os.getpid():
                self._redis.close()
            self._engine = self._redis = None
            self._pid = None
