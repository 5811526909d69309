"""Following a Redis pub/sub channel for cache invalidation and wake-ups, without silent gaps.

A follower owns a connection of its own without redis-py's silent reconnects (a reconnect
could miss messages), pings to notice a dead connection, and reports every loss to its
listener, which then stops trusting what it holds until it is subscribed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

logger = logging.getLogger(__name__)


class FeedListener(Protocol):
    """What a followed channel reports to."""

    @property
    def live(self) -> bool:
        """True while subscribed (the listener may trust what it holds)."""
        ...

    def feed_live(self, live: bool) -> None:
        """Subscribed (True), or the feed was lost and messages may have been missed (False)."""

    def feed_message(self, data: str) -> None:
        """One message published on the channel."""


class ChannelFollower:
    """A listener that follows one channel of its own: set `channel` and `lost_warning`, and
    override `feed_live`/`feed_message` (this base only keeps `live`)."""

    channel: str
    lost_warning: str
    _live = False

    @property
    def live(self) -> bool:
        """True while the process follows the channel (what it holds may be trusted)."""
        return self._live

    @property
    def wants_feed(self) -> bool:
        """False when there is nothing to keep fresh (`follow` then returns at once)."""
        return True

    def feed_live(self, live: bool) -> None:
        """The channel is subscribed (True) or was lost (False)."""
        self._live = live

    def feed_message(self, data: str) -> None:
        """One message published on the channel."""

    async def follow(
        self, redis_url: str, *, timeout_s: float, ping_s: float = 5.0, retry_s: float = 1.0
    ) -> None:
        """Follow the channel until cancelled, resubscribing after any failure."""
        if not self.wants_feed:
            return
        await follow(
            redis_url,
            self.channel,
            self,
            timeout_s=timeout_s,
            ping_s=ping_s,
            retry_s=retry_s,
            lost_warning=self.lost_warning,
        )


async def follow(
    redis_url: str,
    channel: str,
    listener: FeedListener,
    *,
    timeout_s: float,
    lost_warning: str,
    ping_s: float = 5.0,
    retry_s: float = 1.0,
) -> None:
    """Follow `channel` until cancelled, resubscribing after any failure."""
    while True:
        try:
            await _follow_once(redis_url, channel, listener, timeout_s=timeout_s, ping_s=ping_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if listener.live:
                logger.warning(lost_warning, extra={"error": type(exc).__name__})
        finally:
            listener.feed_live(False)
        await asyncio.sleep(retry_s)


async def _follow_once(
    redis_url: str, channel: str, listener: FeedListener, *, timeout_s: float, ping_s: float
) -> None:
    client = Redis.from_url(
        redis_url,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )
    loop = asyncio.get_running_loop()
    try:
        async with client.pubsub() as pubsub:
            await pubsub.subscribe(channel)
            last_heard = next_ping = loop.time()
            while True:
                message = await pubsub.get_message(timeout=min(1.0, ping_s))
                now = loop.time()
                if message is not None:
                    last_heard = now
                    if message["type"] == "subscribe":
                        listener.feed_live(True)
                    elif message["type"] == "message":
                        listener.feed_message(message["data"])
                if now - last_heard > 2 * ping_s + timeout_s:
                    raise TimeoutError(f"no answer to pings on {channel}")
                if now >= next_ping:
                    await pubsub.ping()
                    next_ping = now + ping_s
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()
