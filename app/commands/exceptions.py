"""Errors of the commands domain, each rendered as problem+json."""

from __future__ import annotations

from typing import Any

from app.core.errors import Conflict, Forbidden, NotFound, ServiceUnavailable, Unprocessable


class CommandNotFound(NotFound):
    """No such command on this device, or the caller may not see it."""

    type = "command-not-found"
    title = "Command not found"


class CommandUnknown(Unprocessable):
    """The device's product declares no command of this name."""

    type = "command-unknown"
    title = "Unknown command"


class CommandParamsInvalid(Unprocessable):
    """The params do not follow the command's JSON Schema (nothing was queued)."""

    type = "command-params-invalid"
    title = "Invalid command params"

    def __init__(self, detail: str, *, errors: list[dict[str, Any]]) -> None:
        super().__init__(detail, extra={"errors": errors})


class CommandInputInvalid(Unprocessable):
    """Params or a result too large, too deep or with keys MongoDB cannot store."""

    type = "command-input-invalid"
    title = "Invalid command input"


class CommandTtlTooLong(Unprocessable):
    """`ttl_s` is over COMMANDS_MAX_TTL_S."""

    type = "command-ttl-too-long"
    title = "ttl_s too long"


class CommandQueueFull(Conflict):
    """The device already has COMMANDS_MAX_PENDING_PER_DEVICE commands waiting."""

    type = "command-queue-full"
    title = "Too many commands waiting for this device"


class CommandNotCancellable(Conflict):
    """Only a command not yet delivered can be cancelled."""

    type = "command-not-cancellable"
    title = "Command already delivered or finished"


class StaleDelivery(Conflict):
    """The result names a delivery that is no longer current (redelivered, or finished)."""

    type = "command-stale-delivery"
    title = "Stale delivery id"


class DeviceKeyRequired(Forbidden):
    """Only the device itself, with its key, polls and answers its commands."""

    type = "device-key-required"
    title = "Device key required"


class PollersFull(ServiceUnavailable):
    """This API process holds COMMANDS_MAX_WAITERS long-polls already; retry shortly."""

    type = "command-pollers-full"
    title = "Too many devices waiting"
