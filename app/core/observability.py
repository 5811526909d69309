"""Sentry for the API and the worker: no personal data, no secrets, no expected 4xx.

`sentry_sdk.init` is process-global: `create_app` and the worker's start-up call
`init_sentry` once per process; it does nothing when SENTRY_DSN is unset.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode

import sentry_sdk
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.fastapi import FastApiIntegration
from sentry_sdk.integrations.logging import LoggingIntegration, ignore_logger
from sentry_sdk.integrations.starlette import StarletteIntegration
from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber

from app import __version__
from app.core.config import Settings
from app.core.errors import AppError
from app.core.models import map_leaves

FILTERED = "[Filtered]"

# Matched against keys at any depth (the scrubber runs recursively): request headers, bodies,
# query parameters, frame variables, extra data.
DENYLIST = [
    *DEFAULT_DENYLIST,
    "id_token",
    "access_token",
    "refresh_token",
    "api_key",
    "x-device-key",
    "x_device_key",
    "device_key",
    "key",
    "email",
    "authorization",
    "proxy-authorization",
    "master_token",
    "metrics_token",
    "smtp_password",
    "dsn",
]
_DENIED = {name.lower() for name in DENYLIST}

_BEARER = re.compile(r"(?i)\bbearer\s+[^\s\"',;]+")
_DEVICE_KEY = re.compile(r"\bdk_[A-Za-z0-9_-]{8,}")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")

# Event fields that are ours or the SDK's, never user data (a release such as
# "sensorhub@0.1.0" must not be mistaken for an address).
_META_KEYS = frozenset(
    {"release", "environment", "dist", "sdk", "event_id", "platform", "timestamp", "level"}
)

# Frame variables that hold a whole request (every header, cookies, the body) under a name
# (Starlette requests are Mappings over the ASGI scope, so the SDK serialises them whole)
# the key-based scrubber cannot know about, e.g. the ASGI `scope` with its raw header pairs.
_RAW_REQUEST_VARS = frozenset(
    {
        "scope",
        "request",
        "conn",
        "websocket",
        "headers",
        "raw_headers",
        "message",
        "body",
        "body_bytes",
        "json_body",
        "raw_body",
        "form",
        "cookies",
    }
)

NEVER_TRACED = frozenset({"/health", "/ready", "/metrics"})

# The unhandled-error handler logs the exception that the ASGI integration already reports;
# recording the log line as well would make two events of one failure.
QUIET_LOGGERS = ("app.errors", "uvicorn.error")


def redact_text(text: str) -> str:
    """Replace bearer credentials, device keys, JWTs and email addresses in a string."""
    text = _BEARER.sub(f"Bearer {FILTERED}", text)
    text = _DEVICE_KEY.sub(FILTERED, text)
    text = _JWT.sub(FILTERED, text)
    return _EMAIL.sub(FILTERED, text)


def _redact_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, FILTERED if k.lower() in _DENIED else v) for k, v in pairs])


def _redact_leaf(value: Any) -> Any:
    return redact_text(value) if isinstance(value, str) else value


def _redact(value: Any) -> Any:
    return map_leaves(value, _redact_leaf)


def _drop_raw_request_vars(event: dict[str, Any]) -> None:
    values = (event.get("exception") or {}).get("values") or []
    threads = (event.get("threads") or {}).get("values") or []
    for holder in [*values, *threads]:
        for frame in (holder.get("stacktrace") or {}).get("frames") or []:
            local_vars = frame.get("vars")
            if isinstance(local_vars, dict):
                for name in local_vars.keys() & _RAW_REQUEST_VARS:
                    local_vars[name] = FILTERED


def scrub_event(event: dict[str, Any]) -> dict[str, Any]:
    """Redact secrets and addresses anywhere in an event, including raw query strings."""
    request = event.get("request")
    if isinstance(request, dict) and isinstance(request.get("query_string"), str):
        request["query_string"] = _redact_query(request["query_string"])
    _drop_raw_request_vars(event)
    return {k: (v if k in _META_KEYS else _redact(v)) for k, v in event.items()}


def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    """Drop expected client errors; strip what the key-based scrubber cannot see."""
    exc_info = hint.get("exc_info")
    if exc_info and isinstance(exc_info[1], AppError) and exc_info[1].status < 500:
        return None
    return scrub_event(event)


def before_send_transaction(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """Transactions carry request data and span descriptions too."""
    return scrub_event(event)


def make_traces_sampler(settings: Settings) -> Any:
    """A sampler that never traces probes and scrapes, and follows the rate elsewhere."""

    def sampler(context: dict[str, Any]) -> float:
        scope = context.get("asgi_scope") or {}
        if scope.get("path") in NEVER_TRACED:
            return 0.0
        parent = context.get("parent_sampled")
        if parent is not None:
            return 1.0 if parent else 0.0
        return settings.sentry_traces_sample_rate

    return sampler


def init_sentry(settings: Settings, *, component: str) -> bool:
    """Start the Sentry SDK for this process when SENTRY_DSN is set; True if it did."""
    if not settings.sentry_dsn:
        return False
    for name in QUIET_LOGGERS:
        ignore_logger(name)
    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        environment=settings.sentry_environment or settings.environment,
        release=settings.sentry_release or f"sensorhub@{__version__}",
        # No PII: that is the SDK's default while neither `send_default_pii` (deprecated, it
        # warns when passed) nor `data_collection` is given; the scrubber below does the rest.
        event_scrubber=EventScrubber(denylist=list(DENYLIST), recursive=True),
        before_send=before_send,  # type: ignore[arg-type]
        before_send_transaction=before_send_transaction,  # type: ignore[arg-type]
        sample_rate=settings.sentry_sample_rate,
        traces_sampler=make_traces_sampler(settings),
        profiles_sample_rate=settings.sentry_profiles_sample_rate,
        max_request_body_size="medium",
        integrations=[
            StarletteIntegration(),
            FastApiIntegration(),
            CeleryIntegration(monitor_beat_tasks=False),
            LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
        ],
    )
    sentry_sdk.set_tag("component", component)
    return True


def close_sentry() -> None:
    """Flush and detach the SDK client (worker shutdown, tests)."""
    client = sentry_sdk.get_client()
    if client.is_active():
        client.close(timeout=5)
    sentry_sdk.get_global_scope().set_client(None)
