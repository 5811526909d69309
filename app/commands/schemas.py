"""API schemas of the commands domain (what users send and see, what devices get and post)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal, overload

from pydantic import BaseModel, ConfigDict, Field

from app.catalog.command_specs import CommandName
from app.commands.models import Command, CommandState
from app.core.models import IdStr

DELIVERY_ID_PATTERN = r"^[0-9a-f]{32}$"


@overload
def from_ms(value: int) -> datetime: ...
@overload
def from_ms(value: None) -> None: ...
def from_ms(value: int | None) -> datetime | None:
    """An aware UTC datetime of epoch milliseconds (None stays None)."""
    return None if value is None else datetime.fromtimestamp(value / 1000, tz=UTC)


def _shown(command: Command) -> dict[str, Any]:
    """A stored command's fields as its views name them: times in epoch ms become datetimes."""
    return {
        **command.model_dump(),
        "id": str(command.id),
        "expires_at": from_ms(command.expires_at_ms),
        "delivered_at": from_ms(command.delivered_at_ms),
        "finished_at": from_ms(command.finished_at_ms),
        "ack_by": from_ms(command.ack_deadline_ms),
        "attempt": command.attempts,
    }


class CommandCreate(BaseModel):
    """A command to queue for a device: one its product declares."""

    model_config = ConfigDict(extra="forbid")

    name: CommandName
    params: dict[str, Any] = Field(default_factory=dict)
    ttl_s: int | None = Field(
        default=None, ge=1, description="seconds it may wait for delivery (product default)"
    )


class CommandRead(BaseModel):
    """A command as users (and its device) see it."""

    id: IdStr
    device_id: IdStr
    name: str
    params: dict[str, Any]
    state: CommandState
    attempts: int
    ttl_s: int
    result_expected: bool
    created_by: str
    created_at: datetime
    expires_at: datetime
    delivered_at: datetime | None
    finished_at: datetime | None
    result: dict[str, Any] | None

    @classmethod
    def of(cls, command: Command) -> CommandRead:
        """The API view of a stored command."""
        return cls.model_validate(_shown(command))


class CommandDelivery(BaseModel):
    """What a polling device receives: the command and the delivery to acknowledge."""

    id: IdStr
    name: str
    params: dict[str, Any]
    delivery_id: str = Field(description="post it back with the result")
    attempt: int = Field(description="1 on the first delivery, 2 on the first redelivery ...")
    result_expected: bool
    expires_at: datetime
    ack_by: datetime = Field(description="post the result before this, or it is redelivered")

    @classmethod
    def of(cls, command: Command) -> CommandDelivery:
        """The delivery view of a command just marked delivered."""
        assert command.delivery_id is not None
        assert command.ack_deadline_ms is not None
        return cls.model_validate(_shown(command))


class CommandResultIn(BaseModel):
    """A device's answer to one delivery."""

    model_config = ConfigDict(extra="forbid")

    delivery_id: str = Field(pattern=DELIVERY_ID_PATTERN)
    status: Literal["successful", "failed"]
    result: dict[str, Any] | None = None


class CommandFilters(BaseModel):
    """`GET .../commands` filters."""

    state: CommandState | None = Field(default=None, description="only commands in this state")
