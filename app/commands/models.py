"""Storage model of a device command, and its states.

Times that change after the insert are integer epoch milliseconds (`*_ms`): the embedded
server stores a `$set` datetime as a string and compares dates in update filters to the
second, while integers compare exactly everywhere (README, "Portable MongoDB rules").
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from odmantic import Field

from app.core import collections
from app.core.models import Document, index, stored_in, utcnow


class CommandState(StrEnum):
    """Where a command is in its life (the last five are final)."""

    QUEUED = "queued"
    DELIVERED = "delivered"
    SUCCESSFUL = "successful"
    FAILED = "failed"
    EXPIRED = "expired"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"


FINAL_STATES = frozenset(
    {
        CommandState.SUCCESSFUL,
        CommandState.FAILED,
        CommandState.EXPIRED,
        CommandState.TIMEOUT,
        CommandState.CANCELLED,
    }
)
PENDING_STATES = (CommandState.QUEUED.value, CommandState.DELIVERED.value)


class Command(Document):
    """One command sent to one device.

    `seq` orders a device's commands (FIFO), from a per-device counter. `idempotency_key` is
    always present (unique per device): `<sender uid>:<Idempotency-Key>`, or `auto:<id>` when
    the sender gave none. `delivery_id` names the current delivery; a result must carry it.
    """

    device_id: str
    product_id: str
    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    state: CommandState = CommandState.QUEUED
    seq: int
    idempotency_key: str
    fingerprint: str
    result_expected: bool = False
    ttl_s: int
    created_by: str
    created_at: datetime = Field(default_factory=utcnow)
    created_at_ms: int
    expires_at_ms: int
    attempts: int = 0
    delivery_id: str | None = None
    delivered_at_ms: int | None = None
    ack_deadline_ms: int | None = None
    finished_at_ms: int | None = None
    result: dict[str, Any] | None = None

    model_config = stored_in(
        collections.COMMANDS,
        index("device_id", "idempotency_key", unique=True),
        index("device_id", "seq", unique=True),
        # The poll: a device's queued (or overdue delivered) commands in order.
        index("device_id", "state", "seq"),
        # The sweep: expiries, overdue deliveries, retention.
        index("state", "expires_at_ms"),
        index("state", "ack_deadline_ms"),
        index("finished_at_ms"),
    )
