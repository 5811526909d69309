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

from collections.abc import Iterable

from app.auth.exceptions import KeyRevocationPending
from app.core.feed_cache import FeedCache

CHANNEL = "sensorhub:device-keys:revoked"


class DeviceKeyCache(FeedCache[str, str]):
    """`key hash -> device id`, used only while the revocation feed is live (see the module).

    Each entry is tagged with its device id, and a revocation forgets device ids."""

    channel = CHANNEL
    lost_warning = "device key revocation feed lost; checking every key in MongoDB"

    def lookup(self, key_hash: str) -> str | None:
        """The device id of a key seen recently, or None (look it up in the database)."""
        return self.get(key_hash)

    def remember(self, key_hash: str, device_id: str, *, generation: int) -> None:
        """Keep a lookup made at `generation`, unless a revocation happened meanwhile."""
        self.put(key_hash, device_id, tags=(device_id,), generation=generation)

    async def revoke(self, device_ids: Iterable[str]) -> None:
        """Forget the devices' keys here, then tell every other API process to (call it after
        the database write that rotated or deleted them)."""
        await self.announce(device_ids)

    async def _publish(self, tags: list[str]) -> None:
        # one message per device id: what every process of this channel has always read
        assert self.publisher is not None
        async with self.publisher.pipeline(transaction=False) as pipe:
            for device_id in tags:
                pipe.publish(CHANNEL, device_id)
            await pipe.execute()

    def _not_told(self) -> Exception:
        return KeyRevocationPending(
            "The change is stored, but other API processes could not be told: they may "
            f"accept the old key for up to {self.ttl_s:g} s. Retry to be sure it is revoked."
        )
