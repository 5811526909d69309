"""Device-key lookups kept in memory, trusted only while the revocation feed is live.

Turning a device key into its device costs a MongoDB read, on every device request: the
largest share of the ingest hot path's database work. This cache keeps `key hash -> device
id` for `DEVICE_KEY_CACHE_S` seconds, and still lets a key stop at once when its device's key
is rotated or the device is deleted:

* the API process that rotates or deletes forgets the device's keys before it answers, and
  publishes the device id on a Redis channel;
* every API process follows that channel and forgets the device's keys when the id arrives
  (milliseconds later);
* a process that is not subscribed right now (Redis down, reconnecting, pings unanswered)
  does not use the cache at all, and clears it when it subscribes again, so a revocation it
  may have missed can never keep a key alive.

The TTL bounds only what nobody announces: a key changed in the database by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from cachetools import TTLCache
from redis.asyncio import Redis
from tenacity import AsyncRetrying, stop_after_attempt, wait_exponential

from app.auth.exceptions import KeyRevocationPending
from app.core import feeds

logger = logging.getLogger(__name__)

CHANNEL = "sensorhub:device-keys:revoked"
MAX_ENTRIES = 100_000


class DeviceKeyCache:
    """`key hash -> device id`, used only while the revocation feed is live (see the module)."""

    def __init__(
        self,
        *,
        ttl_s: float,
        publisher: Redis | None = None,
        max_entries: int = MAX_ENTRIES,
        publish_attempts: int = 3,
    ) -> None:
        self.ttl_s = ttl_s
        self.publisher = publisher
        self.publish_attempts = publish_attempts
        self._entries: TTLCache[str, str] | None = (
            TTLCache(maxsize=max_entries, ttl=ttl_s) if ttl_s > 0 else None
        )
        self._live = False
        self._generation = 0

    @property
    def live(self) -> bool:
        """True while the process is subscribed to revocations (the cache is in use)."""
        return self._live

    @property
    def generation(self) -> int:
        """Changes with every revocation and feed change; read it before a database lookup."""
        return self._generation

    def lookup(self, key_hash: str) -> str | None:
        """The device id of a key seen recently, or None (look it up in the database)."""
        if not self._live or self._entries is None:
            return None
        return self._entries.get(key_hash)

    def remember(self, key_hash: str, device_id: str, *, generation: int) -> None:
        """Keep a lookup made at `generation`, unless a revocation happened meanwhile."""
        if self._live and self._entries is not None and generation == self._generation:
            self._entries[key_hash] = device_id

    def forget(self, device_ids: Iterable[str]) -> None:
        """Drop the keys of these devices (rotated or deleted)."""
        self._generation += 1
        if self._entries is None:
            return
        gone = set(device_ids)
        for key_hash, device_id in list(self._entries.items()):
            if device_id in gone:
                self._entries.pop(key_hash, None)

    def set_live(self, live: bool) -> None:
        """Start or stop trusting the cache; either way it starts empty."""
        self._generation += 1
        self._live = live
        if self._entries is not None:
            self._entries.clear()

    async def revoke(self, device_ids: Iterable[str]) -> None:
        """Forget the devices' keys here, then tell every other API process to (call it after
        the database write that rotated or deleted them)."""
        ids = sorted(set(device_ids))
        if not ids:
            return
        self.forget(ids)
        if self.publisher is None:
            return
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.publish_attempts),
                wait=wait_exponential(multiplier=0.05, max=0.5),
                reraise=True,
            ):
                with attempt:
                    await self._publish(ids)
        except Exception as exc:
            logger.error(
                "device key revocation not broadcast",
                extra={"devices": len(ids), "error": type(exc).__name__},
            )
            raise KeyRevocationPending(
                "The change is stored, but other API processes could not be told: they may "
                f"accept the old key for up to {self.ttl_s:g} s. Retry to be sure it is revoked."
            ) from None

    async def _publish(self, ids: list[str]) -> None:
        assert self.publisher is not None
        async with self.publisher.pipeline(transaction=False) as pipe:
            for device_id in ids:
                pipe.publish(CHANNEL, device_id)
            await pipe.execute()

    def feed_live(self, live: bool) -> None:
        """The revocation feed is subscribed (True) or was lost (False)."""
        self.set_live(live)

    def feed_message(self, data: str) -> None:
        """A revoked device id."""
        self.forget([data])

    async def follow(
        self, redis_url: str, *, timeout_s: float, ping_s: float = 5.0, retry_s: float = 1.0
    ) -> None:
        """Follow the revocation channel until cancelled, resubscribing after any failure."""
        if self._entries is None:
            return  # caching is off: nothing to keep fresh
        await feeds.follow(
            redis_url,
            CHANNEL,
            self,
            timeout_s=timeout_s,
            ping_s=ping_s,
            retry_s=retry_s,
            lost_warning="device key revocation feed lost; checking every key in MongoDB",
        )
