"""Worker-side observability: Celery task outcomes counted in Redis, Sentry in the worker.

Workers are separate processes (often on other hosts), so their counters cannot live in the
API's Prometheus registry. Each outcome is a `HINCRBY` on one Redis hash; the API's
`/metrics` reads the hash on scrape and exports it as `sensorhub_celery_tasks_total`.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from celery import Celery
from celery.signals import task_failure, task_retry, task_success

from app.core.config import Settings
from app.core.observability import init_sentry
from app.worker.context import WorkerContext

logger = logging.getLogger(__name__)

TASK_OUTCOMES_KEY = "sensorhub:metrics:celery_tasks"

_contexts: weakref.WeakKeyDictionary[Celery, WorkerContext] = weakref.WeakKeyDictionary()


def attach(app: Celery, ctx: WorkerContext) -> None:
    """Count the outcomes of `app`'s tasks with `ctx`'s Redis client."""
    _contexts[app] = ctx


def _record(sender: Any, outcome: str) -> None:
    from app.worker.tasks import TASK_NAMES  # the task module imports this one

    ctx = _contexts.get(getattr(sender, "app", None))  # type: ignore[arg-type]
    if ctx is None:
        return
    name = getattr(sender, "name", "")
    label = name if name in TASK_NAMES else "other"
    try:
        ctx.redis.hincrby(TASK_OUTCOMES_KEY, f"{label}|{outcome}", 1)
    except Exception as exc:  # metrics must never fail a task
        logger.warning("task outcome not recorded", extra={"error": type(exc).__name__})


@task_success.connect
def _on_success(sender: Any = None, **_: Any) -> None:
    _record(sender, "success")


@task_retry.connect
def _on_retry(sender: Any = None, **_: Any) -> None:
    _record(sender, "retry")


@task_failure.connect
def _on_failure(sender: Any = None, **_: Any) -> None:
    _record(sender, "failure")


def init_sentry_for_worker(settings: Settings) -> None:
    """Start Sentry in a worker or beat process when SENTRY_DSN is set."""
    init_sentry(settings, component="worker")
