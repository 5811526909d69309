"""Prometheus series of the service, defined once; label values are always bounded."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
CELERY_TASKS = Counter(
    "sensorhub_celery_tasks_total",
    "Celery task outcomes by task name (success, retry, failure)",
    ["task", "outcome"],
)
