"""The Celery tasks: thin, synchronous, idempotent, named "domain.verb", given ids only.

One retry mechanism for every task: Celery's autoretry on transient errors (SMTP relay or
MongoDB or Redis away), with exponential backoff and full jitter, capped by
TASK_RETRY_BACKOFF_MAX_S.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import Celery, Task
from pymongo.errors import ConnectionFailure
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.alerts import notify as alert_notify
from app.alerts import sweep as alert_sweep
from app.alerts import webhooks
from app.core.config import Settings
from app.core.models import epoch_ms, utcnow
from app.emails import delivery as emails
from app.emails.mailer import TransientEmailError
from app.worker import cleanup
from app.worker.context import WorkerContext
from app.worker.locks import redis_lock

SEND_EMAIL = "emails.send"
REQUEUE_EMAILS = "emails.requeue_pending"
CLEANUP_SESSIONS = "cleanup.sessions"
CLEANUP_IDEMPOTENCY_KEYS = "cleanup.idempotency_keys"
CLEANUP_READINGS = "cleanup.readings"
CLEANUP_OUTBOX = "cleanup.outbox"
CLEANUP_DELETED_DEVICES = "cleanup.deleted_devices"
REPAIR_TREE = "catalog.repair_tree"
SWEEP_COMMANDS = "commands.sweep"
NOTIFY_ALERT = "alerts.notify"
DELIVER_WEBHOOK = "alerts.webhook"
SWEEP_ALERTS = "alerts.sweep"
RECOUNT_DEVICES = "stats.recount_devices"


@dataclass(frozen=True, slots=True)
class Job:
    """A periodic task that needs nothing but the worker context: what it runs, how often."""

    run: Callable[[WorkerContext], dict[str, Any]]
    every: Callable[[Settings], float]


def _cleanup_interval(settings: Settings) -> float:
    return settings.cleanup_interval_s


# Beat's jobs without arguments or follow-up tasks; a new one is a line here and a function
# taking the context (app/worker/cleanup.py), which also takes its lock where it needs one.
JOBS: dict[str, Job] = {
    CLEANUP_SESSIONS: Job(cleanup.expired_sessions, _cleanup_interval),
    CLEANUP_IDEMPOTENCY_KEYS: Job(cleanup.expired_idempotency_keys, _cleanup_interval),
    CLEANUP_READINGS: Job(cleanup.old_readings, _cleanup_interval),
    CLEANUP_DELETED_DEVICES: Job(cleanup.deleted_devices_data, _cleanup_interval),
    CLEANUP_OUTBOX: Job(cleanup.archive_outbox, _cleanup_interval),
    REPAIR_TREE: Job(cleanup.repair_folder_tree, lambda s: s.catalog_repair_interval_s),
    RECOUNT_DEVICES: Job(cleanup.recount_devices, lambda s: s.stats_recount_interval_s),
    SWEEP_COMMANDS: Job(cleanup.sweep_commands, lambda s: s.commands_sweep_interval_s),
}
# Every task this module defines (metrics label them by name; anything else is "other").
TASK_NAMES = (SEND_EMAIL, REQUEUE_EMAILS, NOTIFY_ALERT, DELIVER_WEBHOOK, SWEEP_ALERTS, *JOBS)

TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    TransientEmailError,
    ConnectionFailure,  # pymongo AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError
    RedisConnectionError,
    RedisTimeoutError,
)


def _bound(job: Job, ctx: WorkerContext) -> Callable[[], dict[str, Any]]:
    """`job` as a task body: no arguments, this process's context, the job's docstring."""

    def run() -> dict[str, Any]:
        return job.run(ctx)

    run.__name__ = job.run.__name__
    run.__doc__ = job.run.__doc__
    return run


def register_tasks(app: Celery, ctx: WorkerContext) -> None:
    """Define every task on `app`, bound to the worker context of this process."""
    settings = ctx.settings
    options: dict[str, Any] = {
        # Bound to this app and its context only; shared tasks would be copied into every
        # Celery app made in the process (the API and tests make several).
        "shared": False,
        "autoretry_for": TRANSIENT_ERRORS,
        "retry_backoff": 1,
        "retry_backoff_max": settings.task_retry_backoff_max_s,
        "retry_jitter": True,
        # The outbox counts attempts itself; this only stops a task retrying forever.
        "max_retries": settings.email_max_attempts + 2,
    }

    @app.task(name=SEND_EMAIL, bind=True, **options)
    def send_email(self: Task[Any, Any], outbox_id: str) -> str:
        """Deliver one outbox email (a no-op if it is sent or being sent already)."""
        return emails.send_outbox_email(ctx, outbox_id)

    @app.task(name=REQUEUE_EMAILS, **options)
    def requeue_emails() -> dict[str, Any]:
        """Re-enqueue outbox entries the broker lost or a dead worker left behind."""
        with redis_lock(ctx.redis, REQUEUE_EMAILS, ttl_ms=cleanup.LOCK_TTL_MS) as acquired:
            if not acquired:
                return cleanup.SKIPPED
            return dict(emails.requeue_stuck(ctx, lambda oid: send_email.delay(oid)))

    for name, job in JOBS.items():
        define: Callable[[Callable[[], dict[str, Any]]], object] = app.task(name=name, **options)
        define(_bound(job, ctx))

    @app.task(name=NOTIFY_ALERT, **options)
    def notify_alert(event_id: str) -> str:
        """Fan one alarm transition out to its rule's emails and webhooks (idempotent)."""
        return alert_notify.process_event(
            ctx,
            event_id,
            send_email=lambda oid: send_email.delay(oid),
            send_webhook=lambda did: deliver_webhook.delay(did),
        )

    webhook_options = {**options, "max_retries": settings.alert_webhook_max_attempts + 2}

    @app.task(name=DELIVER_WEBHOOK, bind=True, **webhook_options)
    def deliver_webhook(self: Task[Any, Any], delivery_id: str) -> str:
        """One signed attempt at a webhook; retried with backoff until it succeeds or gives up."""
        outcome, retry_in = webhooks.deliver(ctx, delivery_id)
        if retry_in is not None:
            raise self.retry(countdown=retry_in)
        return outcome

    @app.task(name=SWEEP_ALERTS, **options)
    def sweep_alerts() -> dict[str, Any]:
        """no_data and for_s deadlines, alarm retention, stuck notification events."""
        lock_ms = int(settings.alerts_sweep_interval_s * 4000) + 60_000
        with redis_lock(ctx.redis, SWEEP_ALERTS, ttl_ms=lock_ms) as acquired:
            if not acquired:
                return cleanup.SKIPPED
            sweeper = alert_sweep.Sweeper(
                ctx,
                now_ms=epoch_ms(utcnow()),
                enqueue=lambda eid: notify_alert.delay(eid),
                enqueue_webhook=lambda did: deliver_webhook.delay(did),
                enqueue_email=lambda oid: send_email.delay(oid),
            )
            return sweeper.run()


def beat_schedule(ctx: WorkerContext) -> dict[str, dict[str, Any]]:
    """What beat runs and how often; a run that waited past its interval is dropped."""
    settings = ctx.settings
    intervals = {
        REQUEUE_EMAILS: settings.email_requeue_interval_s,
        SWEEP_ALERTS: settings.alerts_sweep_interval_s,
        **{name: job.every(settings) for name, job in JOBS.items()},
    }
    return {
        name: {"task": name, "schedule": every, "options": {"expires": every}}
        for name, every in intervals.items()
    }
