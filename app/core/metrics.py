"""Prometheus series of the service, defined once; label values are always bounded."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector


class SharedCounter(Collector):
    """A counter kept outside this process (in Redis, by the Celery workers).

    The `/metrics` handler loads the current totals with `set_totals` just before rendering,
    so a scrape shows what every worker has counted.
    """

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = list(labelnames)
        self._totals: dict[tuple[str, ...], float] = {}
        REGISTRY.register(self)

    def set_totals(self, totals: Mapping[tuple[str, ...], float]) -> None:
        """Replace the totals with the store's current values."""
        self._totals = dict(totals)

    def collect(self) -> Iterator[Metric]:
        """Prometheus hook: one sample per label set."""
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, value in sorted(self._totals.items()):
            family.add_metric(list(labels), value)
        yield family


HTTP_REQUESTS = Counter(
    "sensorhub_http_requests_total",
    "HTTP requests by method, route template and status code",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "sensorhub_http_request_duration_seconds",
    "HTTP request latency by method and route template",
    ["method", "route"],
)
READINGS_INGESTED = Counter(
    "sensorhub_readings_ingested_total",
    "Readings received by devices, by outcome (accepted, rejected, duplicate)",
    ["outcome"],
)
INGEST_FLUSH_READINGS = Histogram(
    "sensorhub_ingest_flush_readings",
    "Readings written per group-commit flush (tune INGEST_FLUSH_INTERVAL_MS with it)",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000),
)
INGEST_RECONCILIATIONS = Counter(
    "sensorhub_ingest_reconciliations_total",
    "Flushes whose write outcome was unknown and that queried their readings back by id",
)
RATE_LIMIT_REJECTIONS = Counter(
    "sensorhub_rate_limit_rejections_total",
    "Requests refused by the rate limiter, by policy",
    ["policy"],
)
RATE_LIMIT_FALLBACKS = Counter(
    "sensorhub_rate_limit_fallbacks_total",
    "Rate-limit decisions made by the in-process fallback because Redis was unavailable",
)
OUTBOX_EMAILS = Gauge(
    "sensorhub_email_outbox",
    "Emails in the outbox by status",
    ["status"],
)
CELERY_TASKS = SharedCounter(
    "sensorhub_celery_tasks",
    "Celery task outcomes by task name (success, retry, failure), counted by the workers",
    ["task", "outcome"],
)
COMMAND_POLLS_WAITING = Gauge(
    "sensorhub_command_polls_waiting",
    "Device command long-polls waiting in this process (bounded by COMMANDS_MAX_WAITERS)",
)
ALERT_EVALUATIONS = Counter(
    "sensorhub_alert_evaluations_total",
    "Readings evaluated against alert rules, by condition type",
    ["condition"],
)
ALERT_EVALUATION_LAG = Histogram(
    "sensorhub_alert_evaluation_lag_seconds",
    "From a flush being stored to its alarm changes being written",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# Counted in Redis by API processes and workers alike (the beat's sweep raises alarms too).
ALARM_TRANSITIONS = SharedCounter(
    "sensorhub_alarm_transitions",
    "Alarm changes by transition (raised, cleared, acknowledged) and severity",
    ["transition", "severity"],
)
ALERT_NOTIFICATIONS = SharedCounter(
    "sensorhub_alert_notifications",
    "Alert notification outcomes by channel (email, webhook) and outcome",
    ["channel", "outcome"],
)
