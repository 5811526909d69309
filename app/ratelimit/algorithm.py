"""The weighted two-window sliding counter, as one Lua script and as the same rule in Python.

The window of `w` ms is split into fixed slots `n = floor(now / w)`. Each identity keeps two
counters, the current slot and the previous one; the previous slot counts with the weight of
the part of it still inside the sliding window, `(w - elapsed) / w`. A request is admitted
when `prev * (w - elapsed) + (cur + 1) * w <= limit * w` (integer arithmetic, so a limit of 1
admits one request and the boundary is exact). Rejected requests are not counted, so a caller
that keeps retrying does not push its own `retry_after` further away.

Memory is O(1) per identity: two integer keys, each expiring once it can no longer be the
previous slot. Both keys share a hash tag, so the script also runs on Redis Cluster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# KEYS[1] current slot, KEYS[2] previous slot.
# ARGV[1] limit, ARGV[2] window ms, ARGV[3] now ms (milliseconds since the epoch).
# Returns {allowed (0/1), remaining, reset ms, retry_after ms}.
SLIDING_WINDOW_LUA = """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local elapsed = now % window
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local prev = tonumber(redis.call('GET', KEYS[2]) or '0')
local rest = window - elapsed
local allowed = 0
if prev * rest + (cur + 1) * window <= limit * window then
  allowed = 1
  cur = redis.call('INCR', KEYS[1])
  if cur == 1 then
    -- Kept until it stops being the previous slot, plus slack for clock skew between
    -- API processes (a second, or one window when windows are shorter).
    redis.call('PEXPIRE', KEYS[1], rest + window + math.min(window, 1000))
  end
end
local remaining = math.floor((limit * window - prev * rest) / window) - cur
if remaining < 0 then remaining = 0 end
local reset = 0
if cur > 0 then reset = rest + window elseif prev > 0 then reset = rest end
local retry = 0
if allowed == 0 then
  retry = -1
  if prev > 0 and cur + 1 <= limit then
    local wait = math.ceil(rest - (limit - cur - 1) * window / prev)
    if wait < 0 then wait = 0 end
    if wait < rest then retry = wait end
  end
  if retry < 0 then
    local later = 0
    if cur > 0 then later = math.ceil(window - (limit - 1) * window / cur) end
    if later < 0 then later = 0 end
    retry = rest + later
  end
end
return {allowed, remaining, reset, retry}
"""


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one check; times are in milliseconds."""

    allowed: bool
    limit: int
    remaining: int
    reset_ms: int
    retry_after_ms: int

    @property
    def reset_s(self) -> int:
        """Seconds until the quota is fully restored (rounded up)."""
        return math.ceil(self.reset_ms / 1000)

    @property
    def retry_after_s(self) -> int:
        """Seconds to wait before a request would be admitted (rounded up, 0 when allowed)."""
        return math.ceil(self.retry_after_ms / 1000)


def slot_keys(prefix: str, policy: str, key: str, *, window_ms: int, now_ms: int) -> list[str]:
    """The current and previous slot keys; the hash tag keeps both on one cluster slot."""
    slot = now_ms // window_ms
    base = f"{prefix}:{{{policy}:{key}}}"
    return [f"{base}:{slot}", f"{base}:{slot - 1}"]


def decide(
    *, prev: int, cur: int, limit: int, window_ms: int, now_ms: int
) -> tuple[bool, int, int, int, int]:
    """The Lua rule in Python: (allowed, new current count, remaining, reset ms, retry ms)."""
    elapsed = now_ms % window_ms
    rest = window_ms - elapsed
    allowed = prev * rest + (cur + 1) * window_ms <= limit * window_ms
    if allowed:
        cur += 1
    remaining = max(0, (limit * window_ms - prev * rest) // window_ms - cur)
    reset = rest + window_ms if cur > 0 else (rest if prev > 0 else 0)
    retry = 0
    if not allowed:
        retry = -1
        if prev > 0 and cur + 1 <= limit:
            wait = max(0, math.ceil(rest - (limit - cur - 1) * window_ms / prev))
            if wait < rest:
                retry = wait
        if retry < 0:
            later = max(0, math.ceil(window_ms - (limit - 1) * window_ms / cur)) if cur else 0
            retry = rest + later
    return allowed, cur, remaining, reset, retry
