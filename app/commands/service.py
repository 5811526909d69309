"""Device commands: send, list, get, cancel (users); next and result (the device itself).

A command moves `queued -> delivered -> successful | failed`, or ends `expired` (TTL passed
before delivery), `timeout` (no result after COMMANDS_MAX_ATTEMPTS deliveries) or
`cancelled`. Every change is one conditional write (app/commands/repository.py), then one
event (app/commands/events.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bson import ObjectId
from odmantic import AIOEngine
from pymongo.errors import DuplicateKeyError

from app.auth.principal import Principal
from app.catalog import command_specs
from app.catalog.models import Device
from app.commands import events, params, repository
from app.commands.exceptions import (
    CommandNotCancellable,
    CommandNotFound,
    CommandQueueFull,
    CommandTtlTooLong,
    CommandUnknown,
    StaleDelivery,
)
from app.commands.models import Command, CommandState
from app.commands.schemas import CommandCreate, CommandFilters, CommandResultIn, from_ms
from app.core.idempotency import IdempotencyKeyReused, check_key
from app.core.models import parse_object_id
from app.core.pagination import PageParams

if TYPE_CHECKING:
    from app.core.services import Services


@dataclass(frozen=True, slots=True)
class Sent:
    """The command queued by a send, and whether it was queued by an earlier, same request."""

    command: Command
    replayed: bool


async def _announce(services: Services, command: Command) -> None:
    """Publish the command's new state; wake this process's pollers at once if queued."""
    if command.state is CommandState.QUEUED:
        services.command_waker.wake(command.device_id)
    await events.publish(services.redis, [events.event(command)])


async def send(
    services: Services,
    *,
    principal: Principal,
    device: Device,
    command_in: CommandCreate,
    idempotency_key: str | None,
) -> Sent:
    """Queue a command the device's product declares, with params valid against its schema."""
    engine, settings = services.engine, services.settings
    if idempotency_key is not None:
        check_key(idempotency_key)
    device_id = str(device.id)
    fingerprint = params.fingerprint(command_in.name, command_in.params, command_in.ttl_s)
    key = f"{principal.uid}:{idempotency_key}" if idempotency_key is not None else None
    if key is not None:
        # A retry gets the first answer, even if the product's declarations changed since.
        earlier = await repository.find_by_key(engine, device_id, key)
        if earlier is not None:
            return _replay(earlier, fingerprint)
    declared = await repository.product_commands(engine, device.product_id)
    spec = command_specs.find(declared, command_in.name)
    if spec is None:
        raise CommandUnknown(f"The device's product declares no command {command_in.name!r}")
    ttl_s = command_in.ttl_s or spec.ttl_s
    if ttl_s > settings.commands_max_ttl_s:
        raise CommandTtlTooLong(f"ttl_s may be at most {settings.commands_max_ttl_s}")
    params.check_document(
        command_in.params, what="params", max_bytes=settings.commands_params_max_bytes
    )
    params.validate(spec.params, command_in.params)
    most = settings.commands_max_pending_per_device
    if await repository.count_pending(engine, device_id) >= most:
        raise CommandQueueFull(
            f"{most} commands are waiting for this device already (COMMANDS_MAX_PENDING_PER_DEVICE)"
        )
    now = repository.now_ms()
    command_id = ObjectId()
    command = Command(
        id=command_id,
        device_id=device_id,
        product_id=device.product_id,
        name=spec.name,
        params=command_in.params,
        seq=await repository.next_seq(engine, device_id),
        idempotency_key=key or f"auto:{command_id}",
        fingerprint=fingerprint,
        result_expected=spec.result_expected,
        ttl_s=ttl_s,
        created_by=principal.uid,
        created_at=from_ms(now),
        created_at_ms=now,
        expires_at_ms=now + ttl_s * 1000,
    )
    try:
        await repository.insert(engine, command)
    except DuplicateKeyError:
        # A concurrent request with the same key won the insert.
        earlier = await repository.find_by_key(engine, device_id, command.idempotency_key)
        if earlier is None:
            raise
        return _replay(earlier, fingerprint)
    await _announce(services, command)
    return Sent(command=command, replayed=False)


def _replay(earlier: Command, fingerprint: str) -> Sent:
    if earlier.fingerprint != fingerprint:
        raise IdempotencyKeyReused("This Idempotency-Key was used for a different command")
    return Sent(command=earlier, replayed=True)


async def list_(
    engine: AIOEngine, *, device: Device, page: PageParams, filters_in: CommandFilters
) -> tuple[list[Command], str | None]:
    """One page of the device's commands, oldest first."""
    return await repository.list_page(engine, str(device.id), page=page, state=filters_in.state)


async def get(engine: AIOEngine, *, device_id: str, command_id: str) -> Command:
    """The device's command (404 when it has none with this id)."""
    oid = parse_object_id(command_id)
    found = None if oid is None else await repository.get(engine, device_id, oid)
    if found is None:
        raise CommandNotFound()
    return found


async def cancel(services: Services, *, device: Device, command_id: str) -> Command:
    """Cancel a command not yet delivered (409 once delivered or finished)."""
    engine = services.engine
    device_id = str(device.id)
    current = await get(engine, device_id=device_id, command_id=command_id)
    cancelled = await repository.cancel(engine, device_id, current.id)
    if cancelled is None:
        latest = await get(engine, device_id=device_id, command_id=command_id)
        raise CommandNotCancellable(f"The command is {latest.state.value}; it cannot be cancelled")
    await _announce(services, cancelled)
    return cancelled


async def next_(
    services: Services,
    *,
    device_id: str,
    wait_s: float,
    disconnected: Callable[[], Awaitable[bool]] | None = None,
) -> Command | None:
    """The device's oldest deliverable command, marked delivered; waits up to `wait_s` for
    one (on an event, holding no database connection); None when none came."""
    engine, settings = services.engine, services.settings
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(wait_s, settings.commands_poll_max_wait_s)
    recheck_s = settings.commands_poll_recheck_s

    async def claim() -> Command | None:
        command = await repository.claim(
            engine,
            device_id,
            ack_timeout_ms=settings.commands_ack_timeout_s * 1000,
            max_attempts=settings.commands_max_attempts,
        )
        if command is not None:
            await _announce(services, command)
        return command

    if loop.time() >= deadline:
        return await claim()
    # Registered before the first look, so a command queued in between still wakes us.
    with services.command_waker.waiter(device_id) as woken:
        while True:
            command = await claim()
            remaining = deadline - loop.time()
            if command is not None or remaining <= 0:
                return command
            woken.clear()
            try:
                await asyncio.wait_for(woken.wait(), timeout=min(remaining, recheck_s))
            except TimeoutError:
                pass
            if disconnected is not None and await disconnected():
                return None


async def record_result(
    services: Services,
    *,
    device_id: str,
    command_id: str,
    result_in: CommandResultIn,
) -> Command:
    """Record the device's answer to its current delivery; the same answer again is a no-op,
    any other delivery id (or answer) is 409."""
    engine, settings = services.engine, services.settings
    if result_in.result is not None:
        params.check_document(
            result_in.result, what="result", max_bytes=settings.commands_result_max_bytes
        )
    current = await get(engine, device_id=device_id, command_id=command_id)
    state = CommandState(result_in.status)
    done = await repository.finish_delivery(
        engine,
        device_id,
        current.id,
        delivery_id=result_in.delivery_id,
        state=state,
        result=result_in.result,
    )
    if done is not None:
        await _announce(services, done)
        return done
    latest = await get(engine, device_id=device_id, command_id=command_id)
    if (
        latest.delivery_id == result_in.delivery_id
        and latest.state is state
        and latest.result == result_in.result
    ):
        return latest  # the same answer, retried
    raise StaleDelivery(
        f"This delivery is no longer current (the command is {latest.state.value}"
        + (", delivered again since" if latest.delivery_id != result_in.delivery_id else "")
        + ")"
    )
