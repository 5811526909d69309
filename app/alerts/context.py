"""What the worker-side alert code needs from its process: settings, sync engine, Redis."""

from __future__ import annotations

from typing import Any, Protocol

from odmantic import SyncEngine
from pymongo.database import Database
from redis import Redis

from app.core.config import Settings


class AlertsContext(Protocol):
    """The worker's per-process clients (`app.worker.context.WorkerContext` is one)."""

    @property
    def settings(self) -> Settings:
        """The worker's settings."""

    @property
    def engine(self) -> SyncEngine:
        """The ODMantic sync engine."""

    @property
    def db(self) -> Database[dict[str, Any]]:
        """The raw pymongo database."""

    @property
    def redis(self) -> Redis:
        """The sync Redis client."""
