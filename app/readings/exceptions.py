"""Errors of the readings domain, each rendered as problem+json."""

from __future__ import annotations

from typing import Any

from app.core.errors import Conflict, Forbidden, ServiceUnavailable, Unprocessable


class ReadingsInvalid(Unprocessable):
    """The request as a whole is rejected; nothing of it was stored."""

    type = "readings-invalid"
    title = "Readings rejected"

    def __init__(self, detail: str, *, errors: list[dict[str, Any]]) -> None:
        super().__init__(detail, extra={"errors": errors})
        self.errors = errors


class MalformedReadings(ReadingsInvalid):
    """The body is not JSON (NaN and Infinity are not JSON either)."""

    type = "malformed-json"
    title = "Malformed JSON body"


class IdempotencyInProgress(Conflict):
    """A request with the same key is still being processed; retry later."""

    type = "idempotency-in-progress"
    title = "A request with this Idempotency-Key is in progress"


class IngestUnavailable(ServiceUnavailable):
    """The readings could not be written (or the service is shutting down); retry later."""

    type = "ingest-unavailable"
    title = "Readings not stored"


class IngestOutcomeUnknown(IngestUnavailable):
    """The write may or may not have been applied (connection lost, failover, timeout).

    The Idempotency-Key is kept: a retry with the same key stores only what is missing.
    """

    type = "ingest-outcome-unknown"
    title = "Readings may not have been stored"


class QueryInvalid(Unprocessable):
    """A history, aggregate or export query asks for something impossible or too large."""

    type = "readings-query-invalid"
    title = "Invalid readings query"


class DeviceKeyRequired(Forbidden):
    """Readings and heartbeats come from devices, authenticated with their own key."""

    type = "device-key-required"
    title = "Device key required"
