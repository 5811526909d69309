"""Recording that users were seen, off the request path, at most once per interval.

A request never waits for this write: the recorder starts it in the background when the
user's `last_seen_at` is older than `USER_SEEN_INTERVAL_S` (as far as this process knows),
so a user calling steadily costs one write per interval per API process, not per request.
"""

from __future__ import annotations

import asyncio
import logging
import time

from odmantic import AIOEngine

from app.auth.models import User
from app.core import db
from app.core.models import utcnow

logger = logging.getLogger(__name__)

MAX_USERS = 100_000


class SeenRecorder:
    """When each user was last recorded as seen by this process, and the pending writes."""

    def __init__(self, *, interval_s: float) -> None:
        self.interval_s = interval_s
        self._next_at: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def seen(self, engine: AIOEngine, user: User) -> None:
        """Note an accepted request of `user`; starts the write when one is due."""
        now = time.monotonic()
        due = self._next_at.get(user.uid)
        if due is None:
            # First sight in this process: the stored time says whether a write is due.
            age = (utcnow() - user.last_seen_at).total_seconds()
            if age < self.interval_s:
                self._remember(user.uid, now + self.interval_s - age)
                return
        elif now < due:
            return
        self._remember(user.uid, now + self.interval_s)
        task = asyncio.create_task(self._write(engine, user.uid), name="user-seen")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _remember(self, uid: str, due: float) -> None:
        if len(self._next_at) >= MAX_USERS:
            self._next_at.clear()
        self._next_at[uid] = due

    async def _write(self, engine: AIOEngine, uid: str) -> None:
        try:
            await db.collection(engine, User).update_one(
                {"uid": uid}, {"$currentDate": {"last_seen_at": True}}
            )
        except Exception as exc:
            logger.warning("last seen not recorded", extra={"error": type(exc).__name__})

    async def drain(self) -> None:
        """Wait for the writes started so far (on shutdown, and in tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
