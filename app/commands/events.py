"""Status events: every state change of a command is published on one Redis channel.

`device.commands` events are JSON objects `{"type": "device.commands", "device_id",
"command_id", "name", "state", "attempts", "at"}` on `CHANNEL`. They are the hook the live
streams follow; this domain's own long-poll waker (app/commands/waker.py) listens to the same
channel and wakes a device's pollers when one of its commands becomes `queued`.

Each change also counts in a Redis hash (same pipeline, one round trip), read on scrape
into `sensorhub_device_command_transitions_total{state}`: API processes and the beat's sweep
count into one place. Events are published after the change is stored and are best effort:
a poller that missed one finds the command on its periodic re-check.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from typing import Any

from redis import Redis as SyncRedis
from redis.asyncio import Redis

from app.commands.models import Command, CommandState
from app.core.metrics import SharedCounter
from app.core.models import utcnow

logger = logging.getLogger(__name__)

EVENT_TYPE = "device.commands"
CHANNEL = "sensorhub:events:device.commands"
TRANSITIONS_KEY = "sensorhub:commands:transitions"

TRANSITIONS = SharedCounter(
    "sensorhub_device_command_transitions",
    "Device command state changes by new state (counted in Redis by every process)",
    ["state"],
)


def event(command: Command) -> dict[str, Any]:
    """The event announcing `command`'s current state."""
    return make_event(
        device_id=command.device_id,
        command_id=str(command.id),
        name=command.name,
        state=command.state,
        attempts=command.attempts,
    )


def make_event(
    *, device_id: str, command_id: str, name: str, state: CommandState, attempts: int
) -> dict[str, Any]:
    """The event saying command `command_id` of `device_id` is now in `state`."""
    return {
        "type": EVENT_TYPE,
        "device_id": device_id,
        "command_id": command_id,
        "name": name,
        "state": state.value,
        "attempts": attempts,
        "at": utcnow().isoformat(),
    }


async def publish(redis: Redis, events: Iterable[dict[str, Any]]) -> None:
    """Publish and count events (logged, never raised: the change is stored already)."""
    batch = list(events)
    if not batch:
        return
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for item in batch:
                pipe.publish(CHANNEL, json.dumps(item))
                pipe.hincrby(TRANSITIONS_KEY, item["state"], 1)
            await pipe.execute()
    except Exception as exc:
        logger.warning(
            "command events not published", extra={"events": len(batch), "error": str(exc)}
        )


def publish_sync(redis: SyncRedis, events: Iterable[dict[str, Any]]) -> None:
    """`publish` for the worker's synchronous client."""
    batch = list(events)
    if not batch:
        return
    try:
        with redis.pipeline(transaction=False) as pipe:
            for item in batch:
                pipe.publish(CHANNEL, json.dumps(item))
                pipe.hincrby(TRANSITIONS_KEY, item["state"], 1)
            pipe.execute()
    except Exception as exc:
        logger.warning(
            "command events not published", extra={"events": len(batch), "error": str(exc)}
        )


async def refresh_metrics(redis: Redis, *, timeout: float) -> None:
    """Load the transition totals into the registry (before a scrape); on failure keep the
    previous ones."""
    try:
        raw = await asyncio.wait_for(redis.hgetall(TRANSITIONS_KEY), timeout)
    except Exception as exc:  # a scrape must answer even when Redis is away
        logger.warning("command transitions unavailable", extra={"error": type(exc).__name__})
        return
    known = {state.value for state in CommandState}
    totals: dict[tuple[str, ...], float] = {(state,): 0.0 for state in sorted(known)}
    for field, value in raw.items():
        name = field.decode() if isinstance(field, bytes) else str(field)
        if name in known:
            totals[(name,)] = float(value)
    TRANSITIONS.set_totals(totals)
