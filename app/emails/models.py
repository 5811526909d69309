"""Storage models of the worker domain."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from odmantic import Field

from app.core import collections
from app.core.models import Document, index, stored_in, utcnow


class OutboxStatus(StrEnum):
    """Lifecycle of an outbox email.

    pending -> sending (claimed by one task, attempts + 1) -> sent; a transient failure puts
    it back to pending for the retry; after EMAIL_MAX_ATTEMPTS, or on a permanent error,
    failed. Sent and failed entries are archived after OUTBOX_ARCHIVE_AFTER_DAYS.
    """

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    ARCHIVED = "archived"


class EmailOutbox(Document):
    """An email the system promised to send; the task sends it and records the outcome."""

    to: str
    template: str
    context: dict[str, Any] = Field(default_factory=dict)
    status: OutboxStatus = OutboxStatus.PENDING
    attempts: int = 0
    claim: str | None = None
    last_error: str | None = None
    dedupe_key: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None

    model_config = stored_in(
        collections.EMAIL_OUTBOX,
        index("status", "updated_at"),
        index(
            "dedupe_key", unique=True, partialFilterExpression={"dedupe_key": {"$type": "string"}}
        ),
    )
