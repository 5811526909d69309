"""The readings fan-out of one flush: each device's SSE buffer entry, then its message."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI

from app.core.services import services_of
from app.live import channels
from app.live.publish import ReadingsFanout, stream_key
from app.readings.batcher import DeviceFlush


def stored(ts: datetime, value: float) -> dict[str, Any]:
    """A reading as the batcher hands it to listeners."""
    return {"ts": ts, "meta": {}, "m": {"temperature": value}}


class TestOneFlushManyDevices:
    async def test_each_message_carries_its_own_buffer_entry(self, app: FastAPI) -> None:
        redis = services_of(app).redis
        now = datetime.now(UTC)
        devices = [f"fanout-{i}-{now.timestamp()}" for i in range(3)]
        flushed = [
            DeviceFlush(device_id=d, product_id="p", docs=[stored(now, i), stored(now, i + 0.5)])
            for i, d in enumerate(devices)
        ]
        pubsub = redis.pubsub()
        await pubsub.subscribe(*(channels.readings_channel(d) for d in devices))
        try:
            await ReadingsFanout(redis, buffer_len=10)(flushed)
            messages: dict[str, dict[str, Any]] = {}
            async with asyncio.timeout(10):
                while len(messages) < len(devices):
                    raw = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                    if raw is not None:
                        payload = json.loads(raw["data"])
                        messages[payload["device_id"]] = payload
        finally:
            await pubsub.aclose()
        for i, device_id in enumerate(devices):
            entries = await redis.xrange(stream_key(device_id))
            assert len(entries) == 1
            entry_id, fields = entries[0]
            sent = messages[device_id]
            assert sent["sid"] == entry_id.decode()
            assert json.loads(fields[b"r"]) == sent["readings"]
            assert [r["metrics"]["temperature"] for r in sent["readings"]] == [i, i + 0.5]

    async def test_without_a_buffer_messages_have_no_entry(self, app: FastAPI) -> None:
        redis = services_of(app).redis
        device_id = f"fanout-unbuffered-{datetime.now(UTC).timestamp()}"
        pubsub = redis.pubsub()
        await pubsub.subscribe(channels.readings_channel(device_id))
        try:
            flush = DeviceFlush(device_id, "p", [stored(datetime.now(UTC) - timedelta(1), 1)])
            await ReadingsFanout(redis, buffer_len=0)([flush])
            async with asyncio.timeout(10):
                raw = None
                while raw is None:
                    raw = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
        finally:
            await pubsub.aclose()
        assert json.loads(raw["data"])["sid"] is None
        assert not await redis.exists(stream_key(device_id))
