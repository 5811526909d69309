"""Serving one WebSocket: authentication, the message protocol, timers and limits.

Protocol (JSON text messages; the README has the full reference):
client -> server: `auth` {token}, `subscribe` {id, channel, device_id|folder_id[, metrics]},
`unsubscribe` {id}, `ping`.
server -> client: `authenticated` {expires_at}, `subscribed` {id}, `unsubscribed` {id},
`event` {id, channel, data}, `error` {id, code, message}, `reauth` {expires_at},
`degraded` / `resumed` {since}, `pong`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from app.auth import service as auth_service
from app.auth import tokens
from app.auth.exceptions import InvalidCredentials
from app.catalog.models import Device
from app.core.errors import AppError, NotFound
from app.core.services import Services
from app.live import channels
from app.live.connection import (
    CLOSE_NORMAL,
    CLOSE_TOO_MANY,
    CLOSE_UNAUTHORIZED,
    Connection,
    Subscription,
    encode,
)
from app.live.hub import LiveHub, _principal_key
from app.live.metrics import LIVE_MESSAGES_SENT
from app.ratelimit.policies import Policy

logger = logging.getLogger(__name__)

_MAX_ID = 64
_MAX_METRICS = 50
_MAX_MESSAGE = 16_384


class _Refused(Exception):
    """A client message that gets an `error` answer."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


async def _receive(websocket: WebSocket) -> dict[str, Any] | None:
    """The next message as a JSON object (None when it is not one)."""
    text = await websocket.receive_text()
    if len(text) > _MAX_MESSAGE:
        return None
    try:
        message = json.loads(text)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


async def _authenticate(
    services: Services, token: Any
) -> tuple[auth_service.Authentication, datetime | None]:
    """Check a token as the HTTP API does; its expiry (None for device keys and master)."""
    if not isinstance(token, str) or not token or len(token) > 8192:
        raise InvalidCredentials('Send {"type": "auth", "token": <token>}')
    authentication = await auth_service.authenticate(services, token)
    expires_at: datetime | None = None
    if authentication.identity is not None:
        expires_at = datetime.fromtimestamp(authentication.identity.expires_at, UTC)
    elif tokens.is_ours(services.settings, token):
        expires_at = tokens.decode(services.settings, token, typ=tokens.ACCESS).expires_at
    return authentication, expires_at


async def serve(websocket: WebSocket, services: Services, hub: LiveHub) -> None:
    """Run one socket from accept to close."""
    settings = services.settings
    await websocket.accept()

    async def send_text(text: str) -> None:
        await websocket.send_text(text)
        LIVE_MESSAGES_SENT.inc()

    async def send(message: dict[str, Any]) -> None:
        await send_text(encode(message))

    conn = Connection(send, queue_limit=settings.ws_send_queue, send_text=send_text)
    hub.add(conn)
    tasks: list[asyncio.Task[None]] = []
    claimed = False
    try:
        if hub.closing:
            conn.close(1001, "the server is shutting down; reconnect", "shutdown")
        else:
            claimed = await _open(websocket, services, hub, conn)
        if claimed:
            session = _Session(websocket, services, hub, conn)
            tasks = [
                asyncio.create_task(session.receive_loop()),
                asyncio.create_task(conn.sender()),
            ]
            conn.timed = True  # the hub's timer loop checks expiry and idleness
            for task in tasks:
                task.add_done_callback(
                    lambda t: (
                        None
                        if t.cancelled() or t.exception() is None
                        else conn.close(1011, "internal error", "error")
                    )
                )
            await conn.done.wait()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        # The close frame first: the hub counts a socket as gone once it is removed.
        if conn.close_label != "client" and websocket.client_state is WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await websocket.close(conn.close_code, conn.close_reason)
        await hub.remove(conn)
        if claimed and conn.principal is not None:
            await hub.release(conn, conn.principal)


async def _open(websocket: WebSocket, services: Services, hub: LiveHub, conn: Connection) -> bool:
    """The `auth` handshake and the per-caller connection limit; False when closed."""
    settings = services.settings
    try:
        async with asyncio.timeout(settings.ws_auth_timeout_s):
            first = await _receive(websocket)
    except TimeoutError:
        conn.close(
            CLOSE_UNAUTHORIZED,
            f"no auth message within {settings.ws_auth_timeout_s:g} s",
            "auth_timeout",
        )
        return False
    except WebSocketDisconnect:
        conn.close(CLOSE_NORMAL, "", "client")
        return False
    if first is None or first.get("type") != "auth":
        conn.close(CLOSE_UNAUTHORIZED, "the first message must be an auth message", "auth_failed")
        return False
    try:
        authentication, expires_at = await _authenticate(services, first.get("token"))
    except AppError as exc:
        conn.close(CLOSE_UNAUTHORIZED, _reason(exc), "auth_failed")
        return False
    principal = authentication.principal
    conn.principal, conn.expires_at = principal, expires_at
    if not await hub.claim(conn, principal):
        conn.close(
            CLOSE_TOO_MANY,
            f"too many open sockets (at most {settings.ws_max_connections_per_user})",
            "too_many_connections",
        )
        return False
    with contextlib.suppress(Exception):  # first sight, profile sync: as the HTTP API does
        await auth_service.accept(services, authentication=authentication)
    conn.control(_authenticated(conn))
    return True


def _reason(exc: AppError) -> str:
    text = str(exc) or "authentication failed"
    return text.encode()[:120].decode(errors="ignore")


def _authenticated(conn: Connection) -> dict[str, Any]:
    expires = None if conn.expires_at is None else conn.expires_at.isoformat()
    return {"type": "authenticated", "expires_at": expires}


class _Session:
    """The receive loop and timers of one authenticated socket."""

    def __init__(
        self, websocket: WebSocket, services: Services, hub: LiveHub, conn: Connection
    ) -> None:
        self.websocket = websocket
        self.services = services
        self.settings = services.settings
        self.hub = hub
        self.conn = conn
        self.loop = asyncio.get_running_loop()
        conn.last_activity = self.loop.time()
        conn.reauth_sent = False
        self.policy = Policy("ws_messages", self.settings.ws_messages_per_s, 1000)

    async def receive_loop(self) -> None:
        """Handle client messages until the client leaves or the connection ends."""
        while not self.conn.done.is_set():
            try:
                message = await _receive(self.websocket)
            except WebSocketDisconnect:
                self.conn.close(CLOSE_NORMAL, "", "client")
                return
            self.conn.last_activity = self.loop.time()
            if self.settings.rate_limit_enabled:
                decision = await self.services.limiter.hit(self.policy, f"ws:{self.conn.id}")
                if not decision.allowed:
                    self.conn.close(
                        CLOSE_TOO_MANY,
                        f"too many messages (at most {self.settings.ws_messages_per_s} a second)",
                        "rate_limited",
                    )
                    return
            ident = message.get("id") if message is not None else None
            try:
                if message is None:
                    raise _Refused("bad_message", "Send JSON objects with a `type`")
                await self.handle(message)
            except _Refused as refused:
                self.conn.control(
                    {
                        "type": "error",
                        "id": ident if isinstance(ident, str) else None,
                        "code": refused.code,
                        "message": refused.message,
                    }
                )

    async def handle(self, message: dict[str, Any]) -> None:
        """One client message."""
        kind = message.get("type")
        if kind == "subscribe":
            await self.subscribe(message)
        elif kind == "unsubscribe":
            sub_id = _sub_id(message)
            sub = self.conn.subscriptions.get(sub_id)
            if sub is None:
                raise _Refused("unknown_id", "No subscription with this id")
            await self.hub.unsubscribe(sub)
            self.conn.control({"type": "unsubscribed", "id": sub_id})
        elif kind == "auth":
            await self.reauthenticate(message)
        elif kind == "ping":
            self.conn.control({"type": "pong"})
        else:
            raise _Refused("bad_message", "Unknown message type")

    async def reauthenticate(self, message: dict[str, Any]) -> None:
        """A fresh token for the same caller extends the socket's life."""
        try:
            authentication, expires_at = await _authenticate(self.services, message.get("token"))
        except AppError as exc:
            self.conn.close(CLOSE_UNAUTHORIZED, _reason(exc), "auth_failed")
            return
        assert self.conn.principal is not None
        if _principal_key(authentication.principal) != _principal_key(self.conn.principal):
            self.conn.close(CLOSE_UNAUTHORIZED, "the token names another caller", "auth_failed")
            return
        self.conn.principal, self.conn.expires_at = authentication.principal, expires_at
        self.conn.reauth_sent = False
        self.conn.control(_authenticated(self.conn))

    async def subscribe(self, message: dict[str, Any]) -> None:
        """Check and start one subscription."""
        sub_id = _sub_id(message)
        kind = channels.get(str(message.get("channel")))
        if kind is None:
            raise _Refused("bad_channel", f"channel must be one of {', '.join(channels.names())}")
        scope_id = message.get(kind.scope)
        if not isinstance(scope_id, str) or not scope_id or len(scope_id) > 64:
            raise _Refused("bad_message", f"{kind.name} needs `{kind.scope}`")
        metrics = _metrics(message) if "metrics" in kind.extra_fields else None
        if sub_id in self.conn.subscriptions:
            raise _Refused("duplicate_id", "A subscription with this id is active")
        if len(self.conn.subscriptions) >= self.settings.ws_max_subscriptions:
            raise _Refused(
                "too_many_subscriptions",
                f"At most {self.settings.ws_max_subscriptions} subscriptions per socket",
            )
        assert self.conn.principal is not None
        what = "folder" if kind.scope == "folder_id" else "device"
        try:
            resource = await kind.check(self.services.engine, self.conn.principal, scope_id)
        except NotFound:
            # The same answer for a missing and an invisible resource: nothing leaks.
            raise _Refused("not_found", f"No such {what}") from None
        except AppError:
            raise _Refused("forbidden", f"You may not follow this {what}") from None
        if sub_id in self.conn.subscriptions or self.conn.done.is_set():
            raise _Refused("duplicate_id", "A subscription with this id is active")
        sub = Subscription(sub_id, kind, scope_id, self.conn, metrics=metrics)
        await self.hub.subscribe(sub)
        self.conn.control(
            {"type": "subscribed", "id": sub_id, "channel": kind.name, kind.scope: scope_id}
        )
        if kind.name == channels.STATUS and isinstance(resource, Device):
            self.hub.note_statuses([sub], {scope_id: resource.presence})
        elif kind.name == channels.FOLDER_DEVICES:
            self.hub.note_statuses([sub], await self.hub.folder_presences(scope_id))


def _sub_id(message: dict[str, Any]) -> str:
    sub_id = message.get("id")
    if not isinstance(sub_id, str) or not 1 <= len(sub_id) <= _MAX_ID:
        raise _Refused("bad_message", f"`id` must be a string of 1 to {_MAX_ID} characters")
    return sub_id


def _metrics(message: dict[str, Any]) -> frozenset[str] | None:
    metrics = message.get("metrics")
    if metrics is None:
        return None
    if (
        not isinstance(metrics, list)
        or not 1 <= len(metrics) <= _MAX_METRICS
        or not all(isinstance(m, str) and 0 < len(m) <= 100 for m in metrics)
    ):
        raise _Refused("bad_message", f"`metrics` must list 1 to {_MAX_METRICS} metric names")
    return frozenset(metrics)
