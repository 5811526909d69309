"""The channel kinds a client may subscribe to, each with its scope and permission check.

A kind names the Redis channel its events travel on for one scope (a device or a folder) and
decides who may follow it, with the same permission code the HTTP API uses
(`app.catalog.crud.get_for`, viewer role). Domains that land later (alerts, commands) add
their kinds with `register`; nothing else in this package needs to change.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from odmantic import AIOEngine

from app.auth.principal import Principal
from app.catalog import crud
from app.catalog.models import Device, Folder
from app.catalog.permissions.models import Role

PREFIX = "sensorhub:live"

READINGS = "device.readings"
LATEST = "device.latest"
STATUS = "device.status"
FOLDER_DEVICES = "folder.devices"
ALARMS = "alarms"
COMMANDS = "device.commands"

# What a scope resolves to: the resource the permission check loaded (None when polled kinds
# load nothing else). Raises the resource's NotFound when the caller may not see it.
Check = Callable[[AIOEngine, Principal, str], Awaitable[Any]]


async def device_viewer(engine: AIOEngine, principal: Principal, scope_id: str) -> Device:
    """The device, if the caller may view it (a device key: only its own)."""
    return await crud.get_for(
        engine, Device, principal=principal, resource_id=scope_id, role=Role.VIEWER
    )


async def folder_viewer(engine: AIOEngine, principal: Principal, scope_id: str) -> Folder:
    """The folder, if the caller may view it."""
    return await crud.get_for(
        engine, Folder, principal=principal, resource_id=scope_id, role=Role.VIEWER
    )


@dataclass(frozen=True, slots=True)
class ChannelKind:
    """One kind of subscription.

    `scope` is the subscribe message's field naming the scope (`device_id` or `folder_id`).
    `redis_channel` maps a scope to the Redis channel carrying its events; None means the
    kind is polled (`device.status`, `folder.devices`: derived from stored presence on each
    permission re-check). `event_filter` keeps, of a shared channel's events, those of one
    scope. `lossless` kinds promise every event: a client that falls behind is cut off (1013);
    the others may be coalesced.
    """

    name: str
    scope: str
    check: Check
    redis_channel: Callable[[str], str] | None
    lossless: bool = True
    event_filter: Callable[[dict[str, Any], str], bool] | None = None
    extra_fields: tuple[str, ...] = field(default_factory=tuple)


def scoped(kind: str) -> Callable[[str], str]:
    """The per-scope Redis channel name of a kind: `sensorhub:live:<kind>:<scope id>`."""
    return lambda scope_id: f"{PREFIX}:{kind}:{scope_id}"


def readings_channel(device_id: str) -> str:
    """Where a device's stored readings are announced (device.readings and device.latest)."""
    return f"{PREFIX}:readings:{device_id}"


# The commands domain publishes every command state change on one channel of its own
# (app/commands/events.py CHANNEL); a device's subscribers keep that device's events.
COMMANDS_CHANNEL = "sensorhub:events:device.commands"


def _same_device(event: dict[str, Any], scope_id: str) -> bool:
    return event.get("device_id") == scope_id


_REGISTRY: dict[str, ChannelKind] = {}


def register(kind: ChannelKind) -> None:
    """Add (or replace) a channel kind."""
    _REGISTRY[kind.name] = kind


def get(name: str) -> ChannelKind | None:
    """The kind called `name`, if any."""
    return _REGISTRY.get(name)


def names() -> list[str]:
    """Every registered kind's name."""
    return sorted(_REGISTRY)


register(
    ChannelKind(READINGS, "device_id", device_viewer, readings_channel, extra_fields=("metrics",))
)
register(ChannelKind(LATEST, "device_id", device_viewer, readings_channel, lossless=False))
register(ChannelKind(STATUS, "device_id", device_viewer, None, lossless=False))
register(ChannelKind(FOLDER_DEVICES, "folder_id", folder_viewer, None, lossless=False))
# Alarms: the alerts domain publishes alarm changes with `publish.publish(redis, "alarms",
# device_id, event)`; a folder scope is planned once alarms carry their folder path.
register(ChannelKind(ALARMS, "device_id", device_viewer, scoped(ALARMS)))
register(
    ChannelKind(
        COMMANDS,
        "device_id",
        device_viewer,
        lambda _scope: COMMANDS_CHANNEL,
        event_filter=_same_device,
    )
)
