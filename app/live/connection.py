"""One client socket: who it is, its subscriptions and its bounded send queue.

Events are handed to `offer` without waiting: a client that falls behind never delays the
hub, ingest or other clients. Past `WS_SEND_QUEUE` waiting messages, a lossless channel's
event cuts the client off (1013); `device.latest` keeps one pending update per subscription,
merged with newer values (newest per metric), so it never grows the queue.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.auth.principal import Principal
from app.live.channels import ChannelKind
from app.live.metrics import LIVE_DISCONNECTS, LIVE_DROPS

# Close codes: RFC 6455 ones and the application's (4000-4999).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL = 1008
CLOSE_TRY_AGAIN = 1013
CLOSE_UNAUTHORIZED = 4401
CLOSE_TOO_MANY = 4429

Send = Callable[[dict[str, Any]], Awaitable[None]]
SendText = Callable[[str], Awaitable[None]]


def encode(data: Any) -> str:
    """Compact JSON, as every message is sent."""
    return json.dumps(data, separators=(",", ":"), default=str)


@dataclass(eq=False, slots=True)
class Subscription:
    """One `subscribe` of one connection."""

    id: str
    kind: ChannelKind
    scope_id: str
    connection: Connection
    metrics: frozenset[str] | None = None
    # Polled kinds: the statuses last sent (device id -> status).
    state: dict[str, str] = field(default_factory=dict)
    # The event envelope's JSON up to `"data":` (made on first use).
    envelope: str = field(default="", repr=False)

    @property
    def redis_channel(self) -> str | None:
        """The Redis channel this subscription listens on (None for polled kinds)."""
        make = self.kind.redis_channel
        return None if make is None else make(self.scope_id)

    def event_text(self, encoded_data: str) -> str:
        """An event message of this subscription, as JSON around already encoded `data`.

        One event reaches many subscriptions: its data is encoded once per event, and only
        this short envelope per subscription.
        """
        if not self.envelope:
            head = encode(
                {
                    "type": "event",
                    "id": self.id,
                    "channel": self.kind.name,
                    self.kind.scope: self.scope_id,
                }
            )
            self.envelope = head[:-1] + ',"data":'
        return f"{self.envelope}{encoded_data}}}"

    def event(self, data: dict[str, Any]) -> dict[str, Any]:
        """An event message of this subscription."""
        return {
            "type": "event",
            "id": self.id,
            "channel": self.kind.name,
            self.kind.scope: self.scope_id,
            "data": data,
        }


class Connection:
    """A socket's state; `sender` drains the queue, `close` ends it from anywhere."""

    def __init__(self, send: Send, *, queue_limit: int, send_text: SendText | None = None) -> None:
        self.id = uuid.uuid4().hex
        self._send = send
        # Sockets take text: events encoded once per event are spliced, not re-encoded.
        self._send_text = send_text
        self.queue_limit = queue_limit
        self._queue: deque[tuple[str, Any]] = deque()
        self._latest: dict[str, tuple[Subscription, dict[str, Any]]] = {}
        self._wake = asyncio.Event()
        self.done = asyncio.Event()
        self.principal: Principal | None = None
        self.expires_at: datetime | None = None
        self.subscriptions: dict[str, Subscription] = {}
        self.close_code = CLOSE_NORMAL
        self.close_reason = ""
        self.close_label = "client"
        self.sent = 0
        # Checked by the hub's timer loop when `timed` (sockets): the token's expiry and
        # idleness (loop time of the client's last message).
        self.timed = False
        self.stream = False  # an SSE stream rather than a socket
        self.last_activity = 0.0
        self.reauth_sent = False

    @property
    def pending(self) -> int:
        """Messages waiting to be sent."""
        return len(self._queue)

    def close(self, code: int, reason: str, label: str) -> None:
        """End the connection with `code` (the first call wins)."""
        if self.done.is_set():
            return
        self.close_code, self.close_reason, self.close_label = code, reason, label
        LIVE_DISCONNECTS.labels(reason=label).inc()
        self.done.set()
        self._wake.set()

    def control(self, message: dict[str, Any]) -> None:
        """Queue an answer or notice (bounded by what the client asks, never cut off)."""
        if self.done.is_set():
            return
        self._queue.append(("msg", message))
        self._wake.set()

    def offer(self, sub: Subscription, data: dict[str, Any], encoded: str | None = None) -> None:
        """Queue an event of a lossless channel; cut the client off when the queue is full."""
        if self.done.is_set():
            return
        if len(self._queue) >= self.queue_limit:
            LIVE_DROPS.labels(channel=sub.kind.name, how="cut_off").inc()
            self.close(
                CLOSE_TRY_AGAIN,
                f"send queue full ({self.queue_limit}): the client reads too slowly; "
                "reconnect and catch up from history",
                "slow_consumer",
            )
            return
        self._queue.append(("event", (sub, data, encoded)))
        self._wake.set()

    def offer_latest(self, sub: Subscription, values: dict[str, dict[str, Any]]) -> None:
        """Queue newest values per metric, merged into one still waiting for this subscription."""
        if self.done.is_set():
            return
        waiting = self._latest.get(sub.id)
        if waiting is not None and waiting[0] is sub:
            merged = waiting[1]
            for name, value in values.items():
                old = merged.get(name)
                if old is None or str(value["ts"]) >= str(old["ts"]):
                    merged[name] = value
            LIVE_DROPS.labels(channel=sub.kind.name, how="coalesced").inc()
            return
        self._latest[sub.id] = (sub, dict(values))
        self._queue.append(("latest", sub))
        self._wake.set()

    def _materialise(self, item: tuple[str, Any]) -> dict[str, Any] | str | None:
        what, payload = item
        if what == "msg":
            message: dict[str, Any] = payload
            return message
        if what == "event":
            sub_: Subscription = payload[0]
            data: dict[str, Any] = payload[1]
            if self._send_text is None:
                return sub_.event(data)
            return sub_.event_text(payload[2] if payload[2] is not None else encode(data))
        sub: Subscription = payload
        waiting = self._latest.pop(sub.id, None)
        if waiting is None or waiting[0] is not sub or sub.id not in self.subscriptions:
            return None  # unsubscribed meanwhile
        return sub.event({"values": waiting[1]})

    async def _deliver(self, message: dict[str, Any] | str) -> None:
        if isinstance(message, str):
            assert self._send_text is not None
            await self._send_text(message)
        else:
            await self._send(message)

    async def sender(self) -> None:
        """Send queued messages in order until the connection is done."""
        while not self.done.is_set():
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            message = self._materialise(self._queue.popleft())
            if message is not None:
                await self._deliver(message)
                self.sent += 1

    async def flush(self, timeout_s: float) -> None:
        """Send what is queued (at most `timeout_s`), for a clean close."""
        async with asyncio.timeout(timeout_s):
            while self._queue:
                message = self._materialise(self._queue.popleft())
                if message is not None:
                    await self._deliver(message)
