"""Sentry: one event per failing request, nothing personal or secret in it, no 4xx noise."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import sentry_sdk
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from app.core.config import Settings
from app.core.errors import NotFound
from app.core.observability import close_sentry, redact_text, scrub_event
from app.main import create_app
from tests.fixtures.app import client_for
from tests.fixtures.servers import SentryEndpoint

DEVICE_KEY = "dk_SecretDeviceKeyValue1234567890abcdef"
BEARER = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJlLXZhbHVl"
EMAIL = "ada.lovelace@example.org"
SECRETS = (DEVICE_KEY, BEARER, EMAIL, "refresh-secret-value", "api-key-secret-value")


def boom_route(app: FastAPI) -> None:
    async def boom(payload: dict[str, Any]) -> dict[str, str]:
        token = f"Bearer {BEARER}"  # a local variable the SDK would capture with the frame
        raise RuntimeError(f"deliberate failure for {EMAIL} with {token} and {DEVICE_KEY}")

    async def missing() -> dict[str, str]:
        raise NotFound("no such thing")

    app.add_api_route("/boom", boom, methods=["POST"], response_model=None)
    app.add_api_route("/missing", missing, methods=["GET"], response_model=None)


@pytest.fixture
async def sentry_app(
    make_settings: Callable[..., Settings], sentry_endpoint: SentryEndpoint
) -> AsyncIterator[FastAPI]:
    """A separate app with Sentry on, pointed at the local endpoint; Sentry off afterwards."""
    settings = make_settings(sentry_dsn=sentry_endpoint.dsn, sentry_traces_sample_rate=1.0)
    try:
        async with running_app_with_routes(settings) as app:
            yield app
    finally:
        close_sentry()


@asynccontextmanager
async def running_app_with_routes(settings: Settings) -> AsyncIterator[FastAPI]:
    """An app with the test routes added before its lifespan starts."""
    app = create_app(settings)
    boom_route(app)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30):
        yield app


def wait_for_envelopes(endpoint: SentryEndpoint, start: int, *, settle: float = 0.2) -> list[Any]:
    """Envelopes that arrived after `start`, once nothing new came for `settle` seconds."""
    deadline = time.monotonic() + 15
    seen, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = len(endpoint.envelopes)
        if now != seen:
            seen, quiet_since = now, time.monotonic()
        elif now > start and time.monotonic() - quiet_since > settle:
            break
        time.sleep(0.05)
    return endpoint.envelopes[start:]


class TestFailingRequest:
    async def test_exactly_one_event_without_secrets(
        self, sentry_app: FastAPI, sentry_endpoint: SentryEndpoint
    ) -> None:
        start = len(sentry_endpoint.envelopes)
        async with client_for(sentry_app) as http:
            response = await http.post(
                f"/boom?access_token={BEARER}&email={EMAIL}&api_key=api-key-secret-value",
                headers={
                    "Authorization": f"Bearer {BEARER}",
                    "X-Device-Key": DEVICE_KEY,
                    "Cookie": "session=refresh-secret-value",
                },
                json={
                    "email": EMAIL,
                    "refresh_token": "refresh-secret-value",
                    "nested": {"note": f"contact {EMAIL}", "api_key": "api-key-secret-value"},
                },
            )
        assert response.status_code == 500
        assert BEARER not in response.text
        sentry_sdk.flush(timeout=5)
        envelopes = wait_for_envelopes(sentry_endpoint, start)
        # Only the API's events: the shared Sentry endpoint also hears the test worker, whose
        # tasks (from other tests) may report in the same window.
        events = [
            e
            for env in envelopes
            for e in env.events()
            if e.get("logger") != "celery"
            and not any(
                (v.get("mechanism") or {}).get("type") == "celery"
                for v in (e.get("exception") or {}).get("values", [])
            )
        ]
        assert len(events) == 1
        event = events[0]
        assert event["exception"]["values"][-1]["type"] == "RuntimeError"
        assert event["request"]["method"] == "POST"
        raw = b"".join(env.raw for env in envelopes).decode()
        for secret in SECRETS:
            where = [
                (f["function"], name)
                for v in event["exception"]["values"]
                for f in v["stacktrace"]["frames"]
                for name, value in (f.get("vars") or {}).items()
                if secret in json.dumps(value)
            ]
            assert secret not in raw, where
        assert "authorization" not in {k.lower() for k in event["request"].get("headers", {})} or (
            event["request"]["headers"].get("authorization") in (None, "[Filtered]")
        )
        assert json.dumps(event).count("[Filtered]") >= 3

    async def test_expected_client_error_sends_nothing(
        self, sentry_app: FastAPI, sentry_endpoint: SentryEndpoint
    ) -> None:
        start = len(sentry_endpoint.envelopes)
        async with client_for(sentry_app) as http:
            assert (await http.get("/missing")).status_code == 404
            assert (await http.get("/no/such/route")).status_code == 404
        sentry_sdk.flush(timeout=5)  # returns once the transport has sent what was queued
        events = [e for env in sentry_endpoint.envelopes[start:] for e in env.events()]
        assert events == []


class TestTracing:
    async def test_probes_are_never_traced(
        self, sentry_app: FastAPI, sentry_endpoint: SentryEndpoint
    ) -> None:
        async with client_for(sentry_app) as http:
            # Ready once the live feed's subscription (made in the background) is up.
            deadline = time.monotonic() + 15
            while (await http.get("/ready")).status_code != 200:
                assert time.monotonic() < deadline, "never ready"
                await asyncio.sleep(0.1)
        start = len(sentry_endpoint.envelopes)
        async with client_for(sentry_app) as http:
            for path in ("/health", "/ready", "/metrics", "/health", "/openapi.json"):
                assert (await http.get(path)).status_code == 200
        sentry_sdk.flush(timeout=5)
        envelopes = wait_for_envelopes(sentry_endpoint, start)
        transactions = [
            payload
            for env in envelopes
            for header, payload in env.items
            if header.get("type") == "transaction"
        ]
        names = [t["transaction"] for t in transactions]
        assert names == ["/openapi.json"]


class TestScrubbing:
    def test_redact_text(self) -> None:
        text = f"Authorization: Bearer {BEARER}; key {DEVICE_KEY}; mail {EMAIL}"
        redacted = redact_text(text)
        for secret in (BEARER, DEVICE_KEY, EMAIL):
            assert secret not in redacted

    def test_release_is_not_mistaken_for_an_address(self) -> None:
        event = scrub_event({"release": "sensorhub@0.1.0", "message": EMAIL})
        assert event == {"release": "sensorhub@0.1.0", "message": "[Filtered]"}

    def test_query_string_parameters_by_name(self) -> None:
        event = scrub_event({"request": {"query_string": "id_token=abc&page=2"}})
        assert event["request"]["query_string"] == "id_token=%5BFiltered%5D&page=2"


@pytest.fixture(autouse=True)
def _no_sentry_leak() -> Iterator[None]:
    yield
    close_sentry()
