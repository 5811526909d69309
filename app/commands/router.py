"""Commands routes under `/devices/{device_id}/commands`: users send, list, get and cancel;
the device long-polls `next` and posts results."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status

from app.auth.dependencies import CurrentPrincipal
from app.catalog.dependencies import DeviceForEdit, DeviceForView
from app.commands import service as commands_service
from app.commands.dependencies import PollingDevice
from app.commands.exceptions import (
    CommandInputInvalid,
    CommandNotCancellable,
    CommandNotFound,
    CommandParamsInvalid,
    CommandQueueFull,
    CommandTtlTooLong,
    CommandUnknown,
    PollersFull,
    StaleDelivery,
)
from app.commands.schemas import (
    CommandCreate,
    CommandDelivery,
    CommandFilters,
    CommandRead,
    CommandResultIn,
)
from app.core import idempotency
from app.core.idempotency import IdempotencyKeyReused
from app.core.openapi import raises
from app.core.pagination import Listing, Page, listing
from app.core.routing import API_PREFIX
from app.core.services import ServicesDep

router = APIRouter(prefix=f"{API_PREFIX}/devices/{{device_id}}/commands", tags=["commands"])

CommandListing = Annotated[
    Listing[CommandFilters],
    Depends(listing(CommandFilters, scope="device", scope_dep=DeviceForView)),
]


@router.post(
    "",
    response_model=CommandRead,
    status_code=status.HTTP_201_CREATED,
    summary="Send a command to a device (editor)",
    responses={
        201: {
            "description": "Queued (or, for a retried Idempotency-Key, queued before)",
            "headers": {
                "Idempotent-Replayed": {
                    "description": "`true` when this answers a retry of an earlier send",
                    "schema": {"type": "string", "enum": ["true"]},
                }
            },
        },
    },
)
@raises(
    CommandUnknown, CommandParamsInvalid, CommandTtlTooLong, CommandQueueFull, IdempotencyKeyReused
)
async def send_command(
    response: Response,
    device: DeviceForEdit,
    body: CommandCreate,
    services: ServicesDep,
    principal: CurrentPrincipal,
    idempotency_key: Annotated[
        str | None,
        idempotency.key_header("a retry with the same key and body returns the first command"),
    ] = None,
) -> CommandRead:
    """Queue a command the device's product declares; a retry with the same Idempotency-Key
    returns the first command (`Idempotent-Replayed: true`) and queues nothing."""
    sent = await commands_service.send(
        services,
        principal=principal,
        device=device,
        command_in=body,
        idempotency_key=idempotency_key,
    )
    if sent.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return CommandRead.of(sent.command)


@router.get(
    "",
    response_model=Page[CommandRead],
    summary="List a device's commands (viewer)",
)
async def list_commands(listing: CommandListing) -> Page[CommandRead]:
    """The device's commands, oldest first, optionally in one state."""
    return await listing.page_of(Page[CommandRead], commands_service.list_, CommandRead.of)


@router.get(
    "/next",
    response_model=CommandDelivery,
    summary="Take the next command, waiting for one (device key)",
    responses={
        204: {"description": "No command came within `wait` seconds"},
    },
)
@raises(PollersFull)
async def next_command(
    request: Request,
    device_id: PollingDevice,
    services: ServicesDep,
    wait: Annotated[
        float, Query(ge=0, le=3600, description="seconds to wait (capped by the server)")
    ] = 0,
) -> Any:
    """The oldest queued command, marked delivered with a new `delivery_id`; 204 when none
    arrives within `wait` seconds. Post its result before `ack_by`, or it is delivered again."""
    command = await commands_service.next_(
        services, device_id=device_id, wait_s=wait, disconnected=request.is_disconnected
    )
    if command is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return CommandDelivery.of(command)


@router.get(
    "/{command_id}",
    response_model=CommandRead,
    summary="One command of a device (viewer)",
)
@raises(CommandNotFound)
async def get_command(device: DeviceForView, command_id: str, services: ServicesDep) -> CommandRead:
    """One command of the device."""
    command = await commands_service.get(
        services.engine, device_id=str(device.id), command_id=command_id
    )
    return CommandRead.of(command)


@router.post(
    "/{command_id}/cancel",
    response_model=CommandRead,
    summary="Cancel a command not yet delivered (editor)",
)
@raises(CommandNotFound, CommandNotCancellable)
async def cancel_command(
    device: DeviceForEdit, command_id: str, services: ServicesDep
) -> CommandRead:
    """Cancel a command that is still waiting for delivery."""
    command = await commands_service.cancel(services, device=device, command_id=command_id)
    return CommandRead.of(command)


@router.post(
    "/{command_id}/result",
    response_model=CommandRead,
    summary="Post the result of a delivered command (device key)",
)
@raises(CommandNotFound, StaleDelivery, CommandInputInvalid)
async def post_result(
    device_id: PollingDevice, command_id: str, body: CommandResultIn, services: ServicesDep
) -> CommandRead:
    """Acknowledge a delivery as successful or failed, with an optional result object;
    posting the same answer again changes nothing."""
    command = await commands_service.record_result(
        services, device_id=device_id, command_id=command_id, result_in=body
    )
    return CommandRead.of(command)
