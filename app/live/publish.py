"""Publishing events to live subscribers, and the readings fan-out after each flush.

`publish(redis, kind, scope_id, event)` is what other domains call once their change is
stored. `ReadingsFanout` is the batcher's `FlushListener`: once per flush it writes one entry
per device to the device's capped Redis stream (the SSE resume buffer) and then publishes one
message per device, carrying the stream id, so a reading is never announced before it is
stored and never once per subscriber. Both happen in one script call per flush (a device's
entry is added, then announced), one round trip instead of two pipelines of a command per
device each.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.live import channels
from app.live.metrics import LIVE_PUBLISHED
from app.readings.batcher import DeviceFlush
from app.readings.models import metric_name

logger = logging.getLogger(__name__)


def stream_key(device_id: str) -> str:
    """The capped Redis stream holding a device's recent readings (for SSE resume)."""
    return f"{channels.PREFIX}:buffer:{device_id}"


async def publish(redis: Redis, kind: str, scope_id: str, event: dict[str, Any]) -> None:
    """Announce `event` to the subscribers of `kind` for `scope_id` (best effort, logged)."""
    channel_kind = channels.get(kind)
    if channel_kind is None or channel_kind.redis_channel is None:
        raise ValueError(f"no published channel kind {kind!r}")
    try:
        await redis.publish(channel_kind.redis_channel(scope_id), json.dumps(event, default=str))
        LIVE_PUBLISHED.inc()
    except (RedisError, OSError) as exc:
        logger.warning("live event not published", extra={"kind": kind, "error": str(exc)})


def _iso(ts: Any) -> str:
    return ts.isoformat() if isinstance(ts, datetime) else str(ts)


def reading_payload(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored reading as clients see it: `{"ts", "metrics", ["suspect"]}`."""
    out: dict[str, Any] = {
        "ts": _iso(doc["ts"]),
        "metrics": {metric_name(k): v for k, v in (doc.get("m") or {}).items()},
    }
    if doc.get("suspect"):
        out["suspect"] = list(doc["suspect"])
    return out


# KEYS: each device's stream. ARGV: the streams' approximate cap, then per device the channel,
# the message's head (up to the stream id) and the readings (JSON). Adds each device's entry,
# then publishes `<head>,"sid":"<entry id>","readings":<readings>}` on its channel.
_BUFFER_AND_PUBLISH = """
for d = 1, #KEYS do
  local channel, head, body = ARGV[3 * d - 1], ARGV[3 * d], ARGV[3 * d + 1]
  local id = redis.call('XADD', KEYS[d], 'MAXLEN', '~', ARGV[1], '*', 'r', body)
  redis.call('PUBLISH', channel, head .. ',"sid":"' .. id .. '","readings":' .. body .. '}')
end
return #KEYS
"""
# Devices per script call: bounds how long one call holds Redis for a very large flush.
FANOUT_CHUNK = 500


class ReadingsFanout:
    """The `FlushListener` that announces stored readings (one message per device per flush)."""

    def __init__(self, redis: Redis, *, buffer_len: int) -> None:
        self.redis = redis
        self.buffer_len = buffer_len
        self._buffer_and_publish = redis.register_script(_BUFFER_AND_PUBLISH)

    async def __call__(self, flushed: Sequence[DeviceFlush]) -> None:
        """Buffer, then publish, each device's readings of this flush."""
        bodies = [
            (group.device_id, json.dumps([reading_payload(d) for d in group.docs]))
            for group in flushed
        ]
        try:
            if self.buffer_len > 0:
                await self._buffered(bodies)
            else:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for device_id, body in bodies:
                        message = f'{_head(device_id)},"sid":null,"readings":{body}}}'
                        pipe.publish(channels.readings_channel(device_id), message)
                    await pipe.execute()
            LIVE_PUBLISHED.inc(len(bodies))
        except (RedisError, OSError) as exc:
            # Stored already; live clients learn of the gap from the `degraded` event.
            logger.warning("live readings not published", extra={"error": str(exc)})

    async def _buffered(self, bodies: list[tuple[str, str]]) -> None:
        """Add each device's entry to its stream, then announce it with the entry's id."""
        for start in range(0, len(bodies), FANOUT_CHUNK):
            keys: list[str] = []
            args: list[str | int] = [self.buffer_len]
            for device_id, body in bodies[start : start + FANOUT_CHUNK]:
                keys.append(stream_key(device_id))
                # The readings are JSON already: spliced in, not encoded twice.
                args += [channels.readings_channel(device_id), _head(device_id), body]
            await self._buffer_and_publish(keys=keys, args=args)


def _head(device_id: str) -> str:
    """The start of a readings message, up to its stream id."""
    return f'{{"device_id":{json.dumps(device_id)}'
