"""Waiting for something another process holds: try, back off, give up at a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from app.core.errors import AppError


async def until_done(
    attempt: Callable[[], Awaitable[bool]],
    *,
    wait_s: float,
    busy: Callable[[], AppError],
    max_delay_s: float,
) -> None:
    """Call `attempt` until it returns True, sleeping 10 ms, then twice as long each time (at
    most `max_delay_s`); raise `busy()` once `wait_s` has passed without success."""
    deadline = time.monotonic() + wait_s
    delay = 0.01
    while not await attempt():
        if time.monotonic() >= deadline:
            raise busy()
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay_s)
