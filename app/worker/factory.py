"""The Celery app factory: Redis broker from settings, JSON only, late acks, bounded tasks.

The API builds one in its lifespan (to enqueue); the worker entry module
`app.worker.celery_app` builds the one `celery -A` runs. Nothing here reads the environment.
"""

from __future__ import annotations

from celery import Celery

from app.core.config import Settings
from app.worker import signals
from app.worker.context import WorkerContext
from app.worker.tasks import beat_schedule, register_tasks

# Longest a task may run; the broker's visibility timeout must be longer, or Redis would hand
# an unacknowledged (acks_late) task to a second worker while the first is still on it.
TASK_TIME_LIMIT_S = 300
VISIBILITY_TIMEOUT_S = 3600


def create_celery(settings: Settings) -> Celery:
    """A Celery app configured for reliable delivery on the Redis broker, with its tasks."""
    app = Celery("sensorhub", broker=settings.redis_url)
    ctx = WorkerContext(settings)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_time_limit=TASK_TIME_LIMIT_S,
        task_soft_time_limit=TASK_TIME_LIMIT_S - 30,
        worker_prefetch_multiplier=1,
        broker_transport_options={
            "visibility_timeout": VISIBILITY_TIMEOUT_S,
            # A publish to an unreachable broker fails at once instead of retrying for ~6 s
            # inside the request that queued it: the outbox entry stays pending and the beat
            # re-enqueues it. (The worker's consumer reconnects under its own retry settings.)
            "max_retries": 0,
        },
        broker_connection_retry_on_startup=True,
        timezone="UTC",
        enable_utc=True,
        beat_schedule=beat_schedule(ctx),
    )
    register_tasks(app, ctx)
    signals.attach(app, ctx)
    return app
