"""The worker entry module: `celery -A app.worker.celery_app worker` (and `beat`).

The only module that builds a Celery app at import, from the environment's settings; the
API and the tests build their own with `create_celery(settings)`.
"""

from __future__ import annotations

from typing import Any

from celery.signals import beat_init, celeryd_init

from app.core.config import get_settings
from app.worker import signals
from app.worker.factory import create_celery

settings = get_settings()
celery_app = create_celery(settings)


@celeryd_init.connect
def _observe_worker(**_: Any) -> None:
    """Sentry in the worker's main process, before the pool forks (Sentry's advice)."""
    signals.init_sentry_for_worker(settings)


@beat_init.connect
def _observe_beat(**_: Any) -> None:
    """Sentry in the beat process."""
    signals.init_sentry_for_worker(settings)
