"""The migration steps, in the order they apply. Add a step as a new module and list it here.

A step is never edited once released: change what it did with a new step.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from odmantic import AIOEngine

from app.core.config import Settings
from app.migrations.steps import (
    m0001_collections_and_indexes,
    m0002_latest_at_ms,
    m0003_commands,
    m0004_alerts,
    m0005_alarm_closed_ms,
    m0006_alert_digests,
)


@dataclass(frozen=True)
class Step:
    """One migration: a stable id, what it does, and the coroutine that does it."""

    id: str
    description: str
    apply: Callable[[AIOEngine, Settings], Awaitable[None]]


STEPS: list[Step] = [
    Step(
        "0001_collections_and_indexes",
        "create the readings time-series collection, the other collections and their indexes",
        m0001_collections_and_indexes.apply,
    ),
    Step(
        "0002_latest_at_ms",
        "give every device_latest value an integer `at_ms` beside its `ts`",
        m0002_latest_at_ms.apply,
    ),
    Step(
        "0003_commands",
        "create the device commands collection, its indexes and the per-device sequences",
        m0003_commands.apply,
    ),
    Step(
        "0004_alerts",
        "create the alert rules, alarms, rule states, notification events and delivery logs",
        m0004_alerts.apply,
    ),
    Step(
        "0005_alarm_closed_ms",
        "cleared alarms keep a server-clock `closed_ms` that retention counts from",
        m0005_alarm_closed_ms.apply,
    ),
    Step(
        "0006_alert_digests",
        "index notification events by `digest`, for the emails that collect held-back ones",
        m0006_alert_digests.apply,
    ),
]
