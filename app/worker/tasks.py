"""The Celery tasks: thin, synchronous, idempotent, named "domain.verb", given ids only.

One retry mechanism for every task: Celery's autoretry on transient errors (SMTP relay or
MongoDB or Redis away), with exponential backoff and full jitter, capped by
TASK_RETRY_BACKOFF_MAX_S.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from pymongo.errors import ConnectionFailure
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.alerts import notify as alert_notify
from app.alerts import sweep as alert_sweep
from app.alerts import webhooks
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
TASK_NAMES = (
    SEND_EMAIL,
    REQUEUE_EMAILS,
    CLEANUP_SESSIONS,
    CLEANUP_IDEMPOTENCY_KEYS,
    CLEANUP_READINGS,
    CLEANUP_OUTBOX,
    CLEANUP_DELETED_DEVICES,
    REPAIR_TREE,
    SWEEP_COMMANDS,
    NOTIFY_ALERT,
    DELIVER_WEBHOOK,
    SWEEP_ALERTS,
    RECOUNT_DEVICES,
)

TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    TransientEmailError,
    ConnectionFailure,  # pymongo AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError
    RedisConnectionError,
    RedisTimeoutError,
)


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

    @app.task(name=CLEANUP_SESSIONS, **options)
    def cleanup_sessions() -> dict[str, Any]:
        """Delete expired sessions."""
        return cleanup.expired_sessions(ctx)

    @app.task(name=CLEANUP_IDEMPOTENCY_KEYS, **options)
    def cleanup_idempotency_keys() -> dict[str, Any]:
        """Delete expired idempotency keys."""
        return cleanup.expired_idempotency_keys(ctx)

    @app.task(name=CLEANUP_READINGS, **options)
    def cleanup_readings() -> dict[str, Any]:
        """Delete readings past retention."""
        return cleanup.old_readings(ctx)

    @app.task(name=CLEANUP_DELETED_DEVICES, **options)
    def cleanup_deleted_devices() -> dict[str, Any]:
        """Delete the readings and latest values of deleted devices."""
        return cleanup.deleted_devices_data(ctx)

    @app.task(name=CLEANUP_OUTBOX, **options)
    def cleanup_outbox() -> dict[str, Any]:
        """Archive old sent and failed outbox entries."""
        return cleanup.archive_outbox(ctx)

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

    @app.task(name=REPAIR_TREE, **options)
    def repair_tree() -> dict[str, Any]:
        """Mend stale folder paths and cycles (moves without transactions, crashes, races)."""
        return cleanup.repair_folder_tree(ctx)

    @app.task(name=RECOUNT_DEVICES, **options)
    def recount_devices() -> dict[str, Any]:
        """Rebuild the fleet statistics' per-scope device counters from MongoDB."""
        return cleanup.recount_devices(ctx)

    @app.task(name=SWEEP_COMMANDS, **options)
    def sweep_commands() -> dict[str, Any]:
        """Expire, time out and requeue device commands; delete old finished ones."""
        return cleanup.sweep_commands(ctx)


def beat_schedule(ctx: WorkerContext) -> dict[str, dict[str, Any]]:
    """What beat runs and how often; a run that waited past its interval is dropped."""
    settings = ctx.settings
    requeue = settings.email_requeue_interval_s
    every = settings.cleanup_interval_s
    schedule: dict[str, dict[str, Any]] = {
        REQUEUE_EMAILS: {
            "task": REQUEUE_EMAILS,
            "schedule": requeue,
            "options": {"expires": requeue},
        },
    }
    cleanups = (
        CLEANUP_SESSIONS,
        CLEANUP_IDEMPOTENCY_KEYS,
        CLEANUP_READINGS,
        CLEANUP_DELETED_DEVICES,
        CLEANUP_OUTBOX,
    )
    for name in cleanups:
        schedule[name] = {"task": name, "schedule": every, "options": {"expires": every}}
    repair = settings.catalog_repair_interval_s
    schedule[REPAIR_TREE] = {
        "task": REPAIR_TREE,
        "schedule": repair,
        "options": {"expires": repair},
    }
    sweep = settings.commands_sweep_interval_s
    schedule[SWEEP_COMMANDS] = {
        "task": SWEEP_COMMANDS,
        "schedule": sweep,
        "options": {"expires": sweep},
    }
    recount = settings.stats_recount_interval_s
    schedule[RECOUNT_DEVICES] = {
        "task": RECOUNT_DEVICES,
        "schedule": recount,
        "options": {"expires": recount},
    }
    sweep = settings.alerts_sweep_interval_s
    schedule[SWEEP_ALERTS] = {
        "task": SWEEP_ALERTS,
        "schedule": sweep,
        "options": {"expires": sweep},
    }
    return schedule
