"""The SSE readings stream: the same subscription machinery, one channel, resumable.

Each event's id is the Redis stream id of its flush (`seq`); a client reconnecting with
`Last-Event-ID` first gets what the device's capped buffer still holds after that id, then
live events (duplicates skipped by id).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from app.auth.principal import Principal
from app.live import channels
from app.live.connection import Connection, Subscription
from app.live.hub import LiveHub
from app.live.publish import stream_key

_STREAM_ID = re.compile(r"\d{1,20}-\d{1,20}")


def valid_id(value: str) -> bool:
    """Whether `value` has the shape of an event id this stream sends."""
    return _STREAM_ID.fullmatch(value) is not None


def _order(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def _frame(event_id: str | None, event: str, data: dict[str, Any]) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def stream(
    hub: LiveHub,
    *,
    principal: Principal,
    device_id: str,
    metrics: frozenset[str] | None,
    last_event_id: str | None,
    queue_limit: int,
    keepalive_s: float,
) -> AsyncIterator[str]:
    """SSE frames for a device's stored readings until the client leaves or access ends."""
    out: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1)
    conn = Connection(out.put, queue_limit=queue_limit)
    conn.principal, conn.stream = principal, True
    kind = channels.get(channels.READINGS)
    assert kind is not None
    sub = Subscription("sse", kind, device_id, conn, metrics=metrics)
    hub.add(conn)
    await hub.subscribe(sub)
    sender = asyncio.create_task(conn.sender())
    try:
        last = _order(last_event_id) if last_event_id else None
        yield "retry: 2000\n\n"
        if last_event_id is not None:
            entries = await hub.redis.xrange(
                stream_key(device_id), min=f"({last_event_id}", count=10_000
            )
            for raw_id, fields in entries or []:
                entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                stored = fields or {}
                readings = json.loads(stored.get(b"r") or stored.get("r") or "[]")
                if metrics is not None:
                    readings = [
                        {**r, "metrics": {k: v for k, v in r["metrics"].items() if k in metrics}}
                        for r in readings
                    ]
                    readings = [r for r in readings if r["metrics"]]
                last = _order(entry_id)
                if readings:
                    yield _frame(
                        entry_id, "readings", {"device_id": device_id, "readings": readings}
                    )
        while True:
            waiter = asyncio.ensure_future(out.get())
            done_wait = asyncio.ensure_future(conn.done.wait())
            finished, _ = await asyncio.wait(
                {waiter, done_wait}, timeout=keepalive_s, return_when=asyncio.FIRST_COMPLETED
            )
            done_wait.cancel()
            if waiter not in finished:
                waiter.cancel()
                if conn.done.is_set():
                    yield _frame(None, "error", {"code": "closed", "message": conn.close_reason})
                    return
                yield ": keep-alive\n\n"
                continue
            message = waiter.result()
            if message.get("type") == "error":
                yield _frame(
                    None, "error", {"code": message["code"], "message": message["message"]}
                )
                return
            if message.get("type") != "event":
                continue
            data = message["data"]
            seq = data.get("seq")
            if seq and last is not None and _order(seq) <= last:
                continue
            if seq:
                last = _order(seq)
            yield _frame(seq, "readings", {"device_id": device_id, "readings": data["readings"]})
    finally:
        sender.cancel()
        with contextlib.suppress(BaseException):
            await sender
        await hub.remove(conn)
