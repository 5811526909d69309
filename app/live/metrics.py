"""Prometheus series of the live streams (labels bounded: channel kinds and fixed reasons)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

LIVE_SOCKETS = Gauge(
    "sensorhub_live_sockets", "Open live sockets (WebSocket and SSE) in this process"
)
LIVE_SUBSCRIPTIONS = Gauge(
    "sensorhub_live_subscriptions", "Live subscriptions in this process, by channel", ["channel"]
)
LIVE_REDIS_CHANNELS = Gauge(
    "sensorhub_live_redis_channels", "Redis channels this process listens to for its clients"
)
LIVE_MESSAGES_SENT = Counter("sensorhub_live_messages_sent_total", "Messages sent to live clients")
LIVE_DROPS = Counter(
    "sensorhub_live_drops_total",
    "Events not sent as such: coalesced into a newer one, or lost with a cut-off client",
    ["channel", "how"],
)
LIVE_DISCONNECTS = Counter(
    "sensorhub_live_disconnects_total", "Live sockets closed, by reason", ["reason"]
)
LIVE_PUBLISHED = Counter(
    "sensorhub_live_published_total", "Messages this process published to Redis for live clients"
)

# The fixed set of disconnect reasons (the `reason` label takes no other value).
REASONS = (
    "client",
    "auth_timeout",
    "auth_failed",
    "auth_expired",
    "slow_consumer",
    "rate_limited",
    "too_many_connections",
    "idle",
    "shutdown",
    "protocol",
    "error",
)
