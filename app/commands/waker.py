"""Wakes a device's long-polls in this process when a command for it is queued anywhere.

One Redis subscription per process (to the `device.commands` event channel, see
app/commands/events.py) feeds an in-memory map `device id -> events of its waiting polls`.
A waiting poll holds no database connection and no thread: only an `asyncio.Event`. It
re-checks MongoDB when woken, and every COMMANDS_POLL_RECHECK_S anyway, so a lost message
(or Redis away) delays a command by at most that; when the subscription is (re)made, every
waiting poll re-checks, since messages may have been missed meanwhile. The number of waiting
polls per process is bounded (COMMANDS_MAX_WAITERS).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator

from app.commands.events import CHANNEL
from app.commands.exceptions import PollersFull
from app.commands.models import CommandState
from app.core import feeds
from app.core.metrics import COMMAND_POLLS_WAITING

logger = logging.getLogger(__name__)


class CommandWaker(feeds.ChannelFollower):
    """The waiting long-polls of this process, by device (see the module)."""

    channel = CHANNEL
    lost_warning = "command wake-up feed lost; polls re-check on their own"

    def __init__(self, *, max_waiters: int) -> None:
        self.max_waiters = max_waiters
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._count = 0

    @property
    def waiting(self) -> int:
        """Long-polls waiting in this process now."""
        return self._count

    @contextlib.contextmanager
    def waiter(self, device_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever `device_id` may have a new command (503 when full)."""
        if self._count >= self.max_waiters:
            raise PollersFull(
                "This server holds as many waiting devices as it may; retry shortly",
                headers={"Retry-After": "1"},
            )
        event = asyncio.Event()
        self._waiters.setdefault(device_id, set()).add(event)
        self._count += 1
        COMMAND_POLLS_WAITING.inc()
        try:
            yield event
        finally:
            self._count -= 1
            COMMAND_POLLS_WAITING.dec()
            events = self._waiters.get(device_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._waiters[device_id]

    def wake(self, device_id: str) -> None:
        """Wake the polls of `device_id` waiting in this process."""
        for event in self._waiters.get(device_id, ()):
            event.set()

    def wake_all(self) -> None:
        """Wake every waiting poll (after messages may have been missed)."""
        for events in self._waiters.values():
            for event in events:
                event.set()

    def _on_message(self, data: str | bytes) -> None:
        try:
            item = json.loads(data)
            if item.get("state") == CommandState.QUEUED.value:
                self.wake(str(item["device_id"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            logger.warning("malformed command event ignored")

    def feed_live(self, live: bool) -> None:
        """Subscribed (wake every poll: messages may have been missed) or lost."""
        self._live = live
        if live:
            self.wake_all()

    def feed_message(self, data: str) -> None:
        """A command event."""
        self._on_message(data)
