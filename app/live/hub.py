"""The per-process hub: shared Redis subscriptions, dispatch, permission re-checks.

One Redis connection (pub/sub) per process carries every channel a local client follows;
a channel is subscribed when its first local subscription arrives and dropped when the last
one leaves. A message is decoded once and offered to each local subscription without
waiting. Every `LIVE_RECHECK_S` each distinct (caller, channel, scope) is checked again with
the permission code the HTTP API uses: a removed grant ends the subscriptions it covered.
When the Redis connection is lost every socket gets a `degraded` notice, and `resumed` once
the channels are subscribed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from datetime import datetime
from typing import Any

from odmantic import AIOEngine
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from app.auth.principal import Principal
from app.catalog import presence
from app.catalog.models import Device
from app.core import db
from app.core.config import Settings
from app.core.errors import NotFound
from app.core.models import utcnow
from app.live import channels
from app.live.connection import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_UNAUTHORIZED,
    Connection,
    Subscription,
    encode,
)
from app.live.metrics import LIVE_REDIS_CHANNELS, LIVE_SOCKETS, LIVE_SUBSCRIPTIONS

logger = logging.getLogger(__name__)

_BARRIER = f"{channels.PREFIX}:barrier"


def _principal_key(principal: Principal) -> tuple[str, str]:
    return (principal.kind.value, principal.uid)


class LiveHub:
    """Local clients and the shared Redis subscription of one API process."""

    def __init__(self, settings: Settings, *, engine: AIOEngine, redis: Redis) -> None:
        self.settings = settings
        self.engine = engine
        self.redis = redis
        self.connections: set[Connection] = set()
        self._channels: dict[str, set[Subscription]] = defaultdict(set)
        self._pubsub: PubSub | None = None
        self._client: Redis | None = None
        self.connected = False
        self.degraded_since: datetime | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._barrier: asyncio.Event | None = None
        self.closing = False
        self._stopped = False

    # --- life ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start following Redis and re-checking permissions."""
        self._tasks = [
            asyncio.create_task(self._follow(), name="live-follow"),
            asyncio.create_task(self._recheck_loop(), name="live-recheck"),
            asyncio.create_task(self._timer_loop(), name="live-timers"),
        ]

    async def close_sockets(self, *, timeout_s: float = 2.0) -> None:
        """After the last flush: deliver what was published, then close every socket (1001).

        Waits (at most `timeout_s`) until each socket has sent its close frame. Called by the
        server before it closes connections itself (`python -m app`), and by `close`.
        """
        if self.closing:
            return
        self.closing = True
        await self._await_barrier(timeout_s=1.0)
        conns = list(self.connections)
        for conn in conns:
            with contextlib.suppress(Exception):
                await conn.flush(timeout_s=0.5)
            conn.close(CLOSE_GOING_AWAY, "the server is shutting down; reconnect", "shutdown")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while any(c in self.connections for c in conns):
                    await asyncio.sleep(0.02)

    async def close(self) -> None:
        """Close every socket (1001) if not done yet, then stop following Redis."""
        await self.close_sockets()
        # redis-py may turn a cancellation inside `get_message` into a timeout it swallows:
        # the loops also stop on this flag, and are waited for a bounded time.
        self._stopped = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=3.0)
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()

    async def _await_barrier(self, *, timeout_s: float) -> None:
        """Wait until a marker published now comes back: everything before it has arrived."""
        if not self.connected:
            return
        self._barrier = asyncio.Event()
        with contextlib.suppress(Exception):
            await self.redis.publish(_BARRIER, "1")
            async with asyncio.timeout(timeout_s):
                await self._barrier.wait()

    # --- connections and subscriptions --------------------------------------------------------
    def add(self, conn: Connection) -> None:
        """A socket opened."""
        self.connections.add(conn)
        LIVE_SOCKETS.inc()

    async def remove(self, conn: Connection) -> None:
        """A socket closed: drop its subscriptions."""
        if conn in self.connections:
            self.connections.discard(conn)
            LIVE_SOCKETS.dec()
        for sub in list(conn.subscriptions.values()):
            await self.unsubscribe(sub)

    async def subscribe(self, sub: Subscription) -> None:
        """Start delivering a subscription's events (first local listener subscribes Redis)."""
        sub.connection.subscriptions[sub.id] = sub
        LIVE_SUBSCRIPTIONS.labels(channel=sub.kind.name).inc()
        channel = sub.redis_channel
        if channel is None:
            return
        listeners = self._channels[channel]
        listeners.add(sub)
        if len(listeners) == 1:
            LIVE_REDIS_CHANNELS.inc()
            if self._pubsub is not None and self.connected:
                try:
                    await self._pubsub.subscribe(channel)
                except Exception as exc:  # the follower notices and resubscribes everything
                    logger.warning("live subscribe failed", extra={"error": str(exc)})

    async def unsubscribe(self, sub: Subscription) -> None:
        """Stop a subscription (the last local listener unsubscribes Redis)."""
        if sub.connection.subscriptions.get(sub.id) is not sub:
            return
        del sub.connection.subscriptions[sub.id]
        LIVE_SUBSCRIPTIONS.labels(channel=sub.kind.name).dec()
        channel = sub.redis_channel
        if channel is None:
            return
        listeners = self._channels.get(channel)
        if listeners is None:
            return
        listeners.discard(sub)
        if not listeners:
            del self._channels[channel]
            LIVE_REDIS_CHANNELS.dec()
            if self._pubsub is not None and self.connected:
                with contextlib.suppress(Exception):
                    await self._pubsub.unsubscribe(channel)

    @property
    def streams(self) -> int:
        """Open SSE streams (connections that are not sockets)."""
        return sum(c.stream for c in self.connections)

    @property
    def redis_channels(self) -> int:
        """Redis channels this process listens to."""
        return len(self._channels)

    # --- Redis --------------------------------------------------------------------------------
    async def _follow(self) -> None:
        while not self._stopped:
            try:
                await self._follow_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.connected or self.degraded_since is None:
                    logger.warning("live Redis feed lost", extra={"error": type(exc).__name__})
            self._set_degraded()
            await asyncio.sleep(0.5)

    def _set_degraded(self) -> None:
        self.connected = False
        if self.degraded_since is None:
            self.degraded_since = utcnow()
            notice = {
                "type": "degraded",
                "reason": "live updates are interrupted; they resume by themselves",
                "since": self.degraded_since.isoformat(),
            }
            for conn in list(self.connections):
                conn.control(notice)

    async def _follow_once(self) -> None:
        timeout_s = self.settings.redis_timeout_s
        client = Redis.from_url(
            self.settings.redis_url,
            socket_connect_timeout=max(timeout_s, 1.0),
            retry=Retry(NoBackoff(), 0),
        )
        self._client = client
        loop = asyncio.get_running_loop()
        ping_s = 2.0
        try:
            async with client.pubsub() as pubsub:
                wanted = set(self._channels)
                await pubsub.subscribe(_BARRIER, *wanted)
                self._pubsub = pubsub
                self.connected = True
                # Channels first wanted while that subscribe was on its way.
                missed = set(self._channels) - wanted
                if missed:
                    await pubsub.subscribe(*missed)
                if self.degraded_since is not None:
                    notice = {"type": "resumed", "since": self.degraded_since.isoformat()}
                    self.degraded_since = None
                    for conn in list(self.connections):
                        conn.control(notice)
                last_heard = next_ping = loop.time()
                while not self._stopped:
                    message = await pubsub.get_message(timeout=0.5)
                    now = loop.time()
                    if message is not None:
                        last_heard = now
                        if message["type"] == "message":
                            self._dispatch(message["channel"], message["data"])
                    if now - last_heard > 2 * ping_s + timeout_s:
                        raise TimeoutError("no answer to pings on the live feed")
                    if now >= next_ping:
                        await pubsub.ping()
                        next_ping = now + ping_s
        finally:
            self._pubsub = None
            self.connected = False
            with contextlib.suppress(Exception):
                await client.aclose()

    def _dispatch(self, raw_channel: bytes | str, raw: bytes | str) -> None:
        channel = raw_channel.decode() if isinstance(raw_channel, bytes) else raw_channel
        if channel == _BARRIER:
            if self._barrier is not None:
                self._barrier.set()
            return
        listeners = self._channels.get(channel)
        if not listeners:
            return
        try:
            payload = json.loads(raw)
        except ValueError:
            logger.warning("undecodable live message", extra={"channel": channel})
            return
        if not isinstance(payload, dict):
            return
        shared = _Encoded(payload)
        for sub in list(listeners):
            try:
                self._deliver(sub, payload, shared)
            except Exception:
                logger.exception("live delivery failed")

    def _deliver(self, sub: Subscription, payload: dict[str, Any], shared: _Encoded) -> None:
        name = sub.kind.name
        conn = sub.connection
        if name == channels.READINGS:
            readings = payload.get("readings") or []
            if sub.metrics is not None:
                readings = [
                    {**r, "metrics": {k: v for k, v in r["metrics"].items() if k in sub.metrics}}
                    for r in readings
                ]
                readings = [r for r in readings if r["metrics"]]
                if not readings:
                    return
                conn.offer(sub, {"seq": payload.get("sid"), "readings": readings})
                return
            data, encoded = shared.readings()
            conn.offer(sub, data, encoded)
        elif name == channels.LATEST:
            values: dict[str, dict[str, Any]] = {}
            for reading in payload.get("readings") or []:
                for metric, value in reading["metrics"].items():
                    old = values.get(metric)
                    if old is None or reading["ts"] >= old["ts"]:
                        values[metric] = {"ts": reading["ts"], "v": value}
            if values:
                conn.offer_latest(sub, values)
        else:
            if sub.kind.event_filter is not None and not sub.kind.event_filter(
                payload, sub.scope_id
            ):
                return
            conn.offer(sub, payload, shared.whole())

    # --- timers -------------------------------------------------------------------------------
    async def _timer_loop(self) -> None:
        """Every 0.2 s, for every socket: token expiry (`reauth`, then 4401) and idleness.

        One loop for the process rather than a timer task per socket: hundreds of sockets
        would otherwise wake the event loop thousands of times a second for nothing.
        """
        loop = asyncio.get_running_loop()
        while not self._stopped:
            await asyncio.sleep(0.2)
            now, at = utcnow(), loop.time()
            for conn in list(self.connections):
                if conn.timed and not conn.done.is_set():
                    self._check_timers(conn, now=now, loop_time=at)

    def _check_timers(self, conn: Connection, *, now: datetime, loop_time: float) -> None:
        settings = self.settings
        if conn.expires_at is not None:
            left = (conn.expires_at - now).total_seconds()
            if left <= 0:
                conn.close(CLOSE_UNAUTHORIZED, "the token has expired", "auth_expired")
                return
            if left <= settings.ws_reauth_notice_s and not conn.reauth_sent:
                conn.reauth_sent = True
                conn.control({"type": "reauth", "expires_at": conn.expires_at.isoformat()})
        idle = loop_time - conn.last_activity
        if not conn.subscriptions and idle > settings.ws_idle_timeout_s:
            conn.close(CLOSE_NORMAL, "idle: no subscription and no message", "idle")

    # --- permissions and polled kinds ---------------------------------------------------------
    async def _recheck_loop(self) -> None:
        while not self._stopped:
            await asyncio.sleep(self.settings.live_recheck_s)
            try:
                await self.renew_leases()
                await self.recheck()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("live permission re-check failed")

    async def recheck(self) -> None:
        """Check every distinct (caller, kind, scope) once; end what is no longer allowed."""
        groups: dict[tuple[Any, ...], list[Subscription]] = defaultdict(list)
        for conn in list(self.connections):
            if conn.principal is None:
                continue
            for sub in conn.subscriptions.values():
                key = (_principal_key(conn.principal), sub.kind.name, sub.scope_id)
                groups[key].append(sub)
        for subs in groups.values():
            principal = subs[0].connection.principal
            assert principal is not None
            kind = subs[0].kind
            try:
                resource = await kind.check(self.engine, principal, subs[0].scope_id)
            except NotFound:
                for sub in subs:
                    await self.end(sub, code="access_revoked", message=_revoked(kind.scope))
                continue
            if kind.name == channels.STATUS and isinstance(resource, Device):
                self.note_statuses(subs, {subs[0].scope_id: resource.presence})
            elif kind.name == channels.FOLDER_DEVICES:
                self.note_statuses(subs, await self.folder_presences(subs[0].scope_id))

    async def end(self, sub: Subscription, *, code: str, message: str) -> None:
        """End one subscription with an `error` naming why."""
        await self.unsubscribe(sub)
        sub.connection.control({"type": "error", "id": sub.id, "code": code, "message": message})

    async def folder_presences(self, folder_id: str) -> dict[str, dict[str, Any] | None]:
        """Presence of the devices below a folder (the first `LIVE_FOLDER_MAX_DEVICES`)."""
        cursor = (
            db.collection(self.engine, Device)
            # `$in`, not equality on an array element: the embedded server matches nothing
            # for the latter (../shared/mongo-compat.md); both are the same on MongoDB.
            .find({"folder_path": {"$in": [folder_id]}}, {"presence": 1})
            .sort("_id", 1)
            .limit(self.settings.live_folder_max_devices)
        )
        return {str(doc["_id"]): doc.get("presence") async for doc in cursor}

    def note_statuses(
        self, subs: list[Subscription], presences: dict[str, dict[str, Any] | None]
    ) -> None:
        """Send each subscription the devices whose derived status changed since last time."""
        now = utcnow()
        offline_after = self.settings.device_offline_after_s
        statuses = {
            device_id: presence.derive_status(raw, now=now, offline_after_s=offline_after).value
            for device_id, raw in presences.items()
        }
        for sub in subs:
            for device_id, status in statuses.items():
                if sub.state.get(device_id) != status:
                    sub.state[device_id] = status
                    sub.connection.control(
                        sub.event({"device_id": device_id, "status": status, "at": now.isoformat()})
                    )

    # --- connection leases (connections per user, across processes) ---------------------------
    def _lease_key(self, principal: Principal) -> str:
        kind, uid = _principal_key(principal)
        return f"{channels.PREFIX}:conns:{kind}:{uid}"

    async def claim(self, conn: Connection, principal: Principal) -> bool:
        """Count the socket against its caller's limit (fails open without Redis)."""
        key = self._lease_key(principal)
        now = utcnow().timestamp()
        lease = now + 3 * self.settings.live_recheck_s + 5
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zremrangebyscore(key, "-inf", now)
                pipe.zadd(key, {conn.id: lease})
                pipe.zcard(key)
                pipe.expire(key, int(lease - now) + 1)
                _, _, count, _ = await pipe.execute()
        except Exception as exc:
            logger.warning("live connection count unavailable", extra={"error": str(exc)})
            return True
        if int(count) > self.settings.ws_max_connections_per_user:
            await self.release(conn, principal)
            return False
        return True

    async def release(self, conn: Connection, principal: Principal) -> None:
        """Stop counting the socket."""
        with contextlib.suppress(Exception):
            await self.redis.zrem(self._lease_key(principal), conn.id)

    async def renew_leases(self) -> None:
        """Extend the leases of every local socket (called with the re-check)."""
        now = utcnow().timestamp()
        lease = now + 3 * self.settings.live_recheck_s + 5
        conns = [c for c in self.connections if c.principal is not None]
        if not conns:
            return
        with contextlib.suppress(Exception):
            async with self.redis.pipeline(transaction=False) as pipe:
                for conn in conns:
                    assert conn.principal is not None
                    key = self._lease_key(conn.principal)
                    pipe.zadd(key, {conn.id: lease})
                    pipe.expire(key, int(lease - now) + 1)
                await pipe.execute()


class _Encoded:
    """One Redis message's event data, JSON-encoded at most once for all its subscribers."""

    __slots__ = ("_payload", "_readings", "_whole")

    def __init__(self, payload: dict[str, Any]) -> None:
        self._payload = payload
        self._readings: tuple[dict[str, Any], str] | None = None
        self._whole: str | None = None

    def readings(self) -> tuple[dict[str, Any], str]:
        """`device.readings` data (unfiltered) and its JSON."""
        if self._readings is None:
            data = {
                "seq": self._payload.get("sid"),
                "readings": self._payload.get("readings") or [],
            }
            self._readings = (data, encode(data))
        return self._readings

    def whole(self) -> str:
        """The message itself as event data, in JSON."""
        if self._whole is None:
            self._whole = encode(self._payload)
        return self._whole


def _revoked(scope: str) -> str:
    what = "folder" if scope == "folder_id" else "device"
    return f"You no longer have access to this {what}; the subscription has ended"
