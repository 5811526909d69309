"""A keyed in-memory cache that is trusted only while its invalidation feed is live.

For any value (device keys, principals, access paths): entries carry tags (`user:<uid>`,
`device:<id>` ...); a change announces its tags on a Redis channel and every process that
follows the channel (`app.core.feeds`) drops the entries carrying them.

* The process making a change forgets the tags before it publishes, so its own next request
  never sees the old value.
* While the feed is not subscribed (Redis down, reconnecting, pings unanswered) the cache
  answers nothing, and it starts empty when subscribed again: a message missed while away
  can never keep an entry alive.
* A lookup made from the database is kept only if no announcement (and no feed change)
  happened since it started (`generation`), so a slow read racing a change is not cached.
* Entries expire after `ttl_s` whatever happens: that bounds a change nobody announced (an
  edit made by hand in the database, or an announcement that could not be published).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

from cachetools import TTLCache
from redis.asyncio import Redis
from tenacity import AsyncRetrying, stop_after_attempt, wait_exponential

from app.core import feeds
from app.core.errors import ServiceUnavailable

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

EVERYTHING = "*"
MAX_ENTRIES = 100_000


class InvalidationPending(ServiceUnavailable):
    """A change is stored, but not every API process could be told to forget what it cached."""

    type = "invalidation-pending"
    title = "Change not yet known everywhere"


class FeedCache(feeds.ChannelFollower, Generic[K, V]):
    """`key -> value` with tags, used only while the channel is followed (see the module).

    A subclass names its `channel`, the `lost_warning` logged when the feed is lost, and
    `what` a process told too late could keep (said in the 503 `announce` raises)."""

    what = "cached rights"

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
        self.max_entries = max_entries
        # The time entries age by (tests replace it to age them without waiting).
        self.clock: Callable[[], float] = time.monotonic
        self._entries: TTLCache[K, tuple[V, tuple[str, ...]]] | None = (
            TTLCache(maxsize=max_entries, ttl=ttl_s, timer=self._now) if ttl_s > 0 else None
        )
        # tag -> keys that carry it (may name keys already expired; pruned when too large)
        self._tagged: dict[str, set[K]] = {}
        self._generation = 0

    def _now(self) -> float:
        return self.clock()

    @property
    def enabled(self) -> bool:
        """False when caching is switched off (`ttl_s` 0)."""
        return self._entries is not None

    @property
    def generation(self) -> int:
        """Changes with every announcement and feed change; read it before a database read."""
        return self._generation

    def get(self, key: K) -> V | None:
        """The value kept for `key`, or None (read the database)."""
        if not self._live or self._entries is None:
            return None
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def put(self, key: K, value: V, *, tags: Iterable[str], generation: int) -> None:
        """Keep a value read at `generation`, unless something was announced meanwhile."""
        if not self._live or self._entries is None or generation != self._generation:
            return
        tag_tuple = tuple(tags)
        self._entries[key] = (value, tag_tuple)
        if len(self._tagged) > 4 * self.max_entries:
            self._prune()
        for tag in tag_tuple:
            self._tagged.setdefault(tag, set()).add(key)

    def _prune(self) -> None:
        assert self._entries is not None
        self._tagged = {}
        for key, (_, tags) in list(self._entries.items()):
            for tag in tags:
                self._tagged.setdefault(tag, set()).add(key)

    def forget(self, tags: Iterable[str]) -> None:
        """Drop every entry carrying one of `tags` (`*` drops everything)."""
        self._generation += 1
        tag_list = list(tags)
        if self._entries is None:
            return
        if EVERYTHING in tag_list:
            self._entries.clear()
            self._tagged.clear()
            return
        for tag in tag_list:
            for key in self._tagged.pop(tag, ()):
                self._entries.pop(key, None)

    def set_live(self, live: bool) -> None:
        """Start or stop trusting the cache; either way it starts empty."""
        self._generation += 1
        self._live = live
        if self._entries is not None:
            self._entries.clear()
        self._tagged.clear()

    async def announce(self, tags: Iterable[str]) -> None:
        """Forget `tags` here, then tell every other API process to (call it after the
        database write that changed them); 503 `InvalidationPending` when Redis refuses."""
        tag_list = sorted(set(tags))
        if not tag_list:
            return
        self.forget(tag_list)
        if self.publisher is None:
            return
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.publish_attempts),
                wait=wait_exponential(multiplier=0.05, max=0.5),
                reraise=True,
            ):
                with attempt:
                    await self._publish(tag_list)
        except Exception as exc:
            logger.error(
                "cache invalidation not broadcast",
                extra={"channel": self.channel, "error": type(exc).__name__},
            )
            raise self._not_told() from None

    async def _publish(self, tags: list[str]) -> None:
        """Send `tags` on the channel (one message, a tag per line)."""
        assert self.publisher is not None
        await self.publisher.publish(self.channel, "\n".join(tags))

    def _not_told(self) -> Exception:
        """The error `announce` raises when the other processes could not be told."""
        return InvalidationPending(
            f"The change is stored, but other API processes could not be told: they may "
            f"keep {self.what} for up to {self.ttl_s:g} s. Retry to be sure."
        )

    @property
    def wants_feed(self) -> bool:
        """False when caching is off: nothing to keep fresh."""
        return self.enabled

    def feed_live(self, live: bool) -> None:
        """The channel is subscribed (True) or was lost (False)."""
        self.set_live(live)

    def feed_message(self, data: str) -> None:
        """Tags announced by another process (one per line)."""
        self.forget(data.split("\n"))
