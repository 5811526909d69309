"""The Celery app: its tasks, retry policy, beat schedule and delivery settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.core.config import Settings
from app.worker.factory import create_celery
from app.worker.tasks import TASK_NAMES, TRANSIENT_ERRORS


class TestCeleryApp:
    def test_tasks_retry_transient_errors_with_backoff(self, settings: Settings) -> None:
        app = create_celery(settings)
        for name in TASK_NAMES:
            task = app.tasks[name]
            assert task.autoretry_for == TRANSIENT_ERRORS
            assert (task.retry_backoff, task.retry_jitter) == (1, True)
            assert task.retry_backoff_max == settings.task_retry_backoff_max_s

    def test_beat_runs_requeue_and_every_cleanup(self, settings: Settings) -> None:
        schedule = create_celery(settings).conf.beat_schedule
        on_demand = {"emails.send", "alerts.notify", "alerts.webhook"}
        assert {entry["task"] for entry in schedule.values()} == set(TASK_NAMES) - on_demand
        every = {name: entry["schedule"] for name, entry in schedule.items()}
        assert every == {
            "emails.requeue_pending": settings.email_requeue_interval_s,
            "alerts.sweep": settings.alerts_sweep_interval_s,
            "cleanup.sessions": settings.cleanup_interval_s,
            "cleanup.idempotency_keys": settings.cleanup_interval_s,
            "cleanup.readings": settings.cleanup_interval_s,
            "cleanup.deleted_devices": settings.cleanup_interval_s,
            "cleanup.outbox": settings.cleanup_interval_s,
            "catalog.repair_tree": settings.catalog_repair_interval_s,
            "stats.recount_devices": settings.stats_recount_interval_s,
            "commands.sweep": settings.commands_sweep_interval_s,
        }
        # A run that waited past its interval is dropped rather than run late.
        assert all(entry["options"]["expires"] == entry["schedule"] for entry in schedule.values())

    def test_reliable_delivery_settings(self, settings: Settings) -> None:
        conf = create_celery(settings).conf
        assert (conf.task_acks_late, conf.task_reject_on_worker_lost) == (True, True)
        assert conf.accept_content == ["json"]
        assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit


class TestMetricsToken:
    def test_short_token_refused_in_production(self) -> None:
        with pytest.raises(ValidationError, match="METRICS_TOKEN is too short"):
            Settings(  # type: ignore[call-arg]
                _env_file=None,
                environment="production",
                metrics_token="short",
                jwt_secret="x" * 48,
                firebase_auth_emulator_host=None,
            )
