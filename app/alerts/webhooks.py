"""Webhook delivery: signed requests, SSRF refusal, retries with backoff, a log per alarm.

Signature scheme (README, "Alerts"): each request carries
`X-Sensorhub-Timestamp: <unix seconds>` and
`X-Sensorhub-Signature: t=<same>,v1=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>`.
Receivers recompute it over the raw body, compare in constant time, refuse timestamps more
than a few minutes old (replays), and de-duplicate on `X-Sensorhub-Notification-Id`, which
is the same on every retry and re-send of one alarm transition.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import socket
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from pymongo import ReturnDocument

from app.alerts.context import AlertsContext
from app.alerts.models import AlertRule
from app.core import collections
from app.core.models import parse_object_id

logger = logging.getLogger(__name__)

NOTIFICATIONS_KEY = "sensorhub:metrics:alert_notifications"
PENDING, SENDING, DELIVERED, FAILED, REFUSED = (
    "pending",
    "sending",
    "delivered",
    "failed",
    "refused",
)


class RefusedTarget(Exception):
    """The target resolves to an address webhooks may not reach (SSRF guard)."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `<timestamp>.<body>` under the rule's secret."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Sensorhub-Signature` value."""
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


def _forbidden(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return _forbidden(ip.ipv4_mapped)
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def resolve_target(url: str, *, allow_private: bool) -> str:
    """The address to connect to for `url`; RefusedTarget for private ones (unless allowed).

    Every address the name resolves to must be public, and the request then goes to the
    address checked here (not a second lookup), so a rebinding DNS answer cannot swap it.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise RefusedTarget(f"cannot resolve {host}: {exc.strerror or exc}") from None
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not addresses:
        raise RefusedTarget(f"{host} has no address")
    if not allow_private:
        for ip in addresses:
            if _forbidden(ip):
                raise RefusedTarget(f"{host} resolves to {ip}, a private or local address")
    return str(addresses[0])


def _pinned(url: str, address: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    shown = f"[{address}]" if ":" in address else address
    netloc = shown + (f":{parts.port}" if parts.port else "")
    pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    headers = {"Host": parts.netloc}
    extensions: dict[str, Any] = {"sni_hostname": host} if parts.scheme == "https" else {}
    return pinned, headers, extensions


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _count(ctx: AlertsContext, outcome: str) -> None:
    try:
        ctx.redis.hincrby(NOTIFICATIONS_KEY, f"webhook|{outcome}", 1)
    except Exception as exc:  # metrics never fail a delivery
        logger.warning("notification outcome not counted", extra={"error": type(exc).__name__})


def _claim(ctx: AlertsContext, delivery_id: str) -> dict[str, Any] | None:
    coll = ctx.db[collections.WEBHOOK_DELIVERIES]
    lease = _now_ms() + int(ctx.settings.alert_webhook_timeout_s * 1000) * 2 + 30_000
    claim = {"$set": {"status": SENDING, "lease_ms": lease}, "$inc": {"attempts": 1}}
    for query in (
        {"_id": delivery_id, "status": PENDING},
        # A worker died mid-attempt: its lease ran out.
        {"_id": delivery_id, "status": SENDING, "lease_ms": {"$lt": _now_ms()}},
    ):
        doc = ctx.db[collections.WEBHOOK_DELIVERIES].find_one_and_update(
            query, claim, return_document=ReturnDocument.AFTER
        )
        if doc is not None:
            return doc
    del coll
    return None


def log_entry(ctx: AlertsContext, entry: dict[str, Any]) -> None:
    """Append one line to the alarm's notification log (an insert: portable everywhere)."""
    try:
        ctx.db[collections.NOTIFICATION_LOG].insert_one(entry)
    except Exception as exc:  # the delivery itself is recorded on its own document
        logger.warning("notification log not written", extra={"error": type(exc).__name__})


def _finish(ctx: AlertsContext, doc: dict[str, Any], status: str, entry: dict[str, Any]) -> None:
    ctx.db[collections.WEBHOOK_DELIVERIES].update_one(
        {"_id": doc["_id"], "status": SENDING},
        {"$set": {"status": status, "last_error": entry.get("error")}},
    )
    log_entry(ctx, {**entry, "outcome": status})
    _count(ctx, status)


def deliver(ctx: AlertsContext, delivery_id: str) -> tuple[str, float | None]:
    """One attempt: (outcome, seconds until the retry or None). Outcomes: delivered, failed,
    refused, retry, skipped (not ours to send)."""
    doc = _claim(ctx, delivery_id)
    if doc is None:
        return "skipped", None
    settings = ctx.settings
    attempt = int(doc.get("attempts", 1))
    entry: dict[str, Any] = {
        "at_ms": _now_ms(),
        "alarm_id": doc.get("alarm_id"),
        "notification_id": doc.get("notification_id"),
        "channel": "webhook",
        "target": doc["url"],
        "attempt": attempt,
    }
    rule_oid = parse_object_id(doc.get("rule_id", ""))
    rule_doc = ctx.db[collections.ALERT_RULES].find_one({"_id": rule_oid}) if rule_oid else None
    secret = None
    if rule_doc is not None:
        rule = AlertRule.model_validate_doc(rule_doc)
        for target in rule.notify.get("webhooks", []):
            if target.get("url") == doc["url"]:
                secret = target.get("secret")
    if secret is None:
        _finish(ctx, doc, FAILED, {**entry, "error": "the rule or this webhook was removed"})
        return FAILED, None
    try:
        address = resolve_target(doc["url"], allow_private=settings.alert_webhook_allow_private)
    except RefusedTarget as exc:
        _finish(ctx, doc, REFUSED, {**entry, "error": str(exc)})
        logger.warning("webhook target refused", extra={"id": delivery_id, "reason": str(exc)})
        return REFUSED, None
    body = doc["body"].encode()
    timestamp = int(time.time())
    url, headers, extensions = _pinned(doc["url"], address)
    headers.update(
        {
            "Content-Type": "application/json",
            "User-Agent": "Sensorhub-Webhooks/1",
            "X-Sensorhub-Event": doc.get("event", ""),
            "X-Sensorhub-Notification-Id": doc["notification_id"],
            "X-Sensorhub-Timestamp": str(timestamp),
            "X-Sensorhub-Signature": signature_header(secret, timestamp, body),
        }
    )
    error: str | None = None
    status_code: int | None = None
    try:
        with httpx.Client(timeout=settings.alert_webhook_timeout_s, follow_redirects=False) as http:
            resp = http.post(url, content=body, headers=headers, extensions=extensions)
        status_code = resp.status_code
    except httpx.HTTPError as exc:
        error = type(exc).__name__
    entry.update(status_code=status_code, error=error)
    if status_code is not None and 200 <= status_code < 300:
        _finish(ctx, doc, DELIVERED, entry)
        return DELIVERED, None
    permanent = (
        status_code is not None
        and 400 <= status_code < 500
        and status_code
        not in (
            408,
            429,
        )
    )
    backoff_s = min(2 ** (attempt - 1), settings.alert_webhook_backoff_max_s)
    if permanent or attempt >= settings.alert_webhook_max_attempts:
        _finish(ctx, doc, FAILED, entry)
        return FAILED, None
    ctx.db[collections.WEBHOOK_DELIVERIES].update_one(
        {"_id": doc["_id"], "status": SENDING},
        {
            "$set": {
                "status": PENDING,
                "last_error": error or f"HTTP {status_code}",
                "next_ms": _now_ms() + backoff_s * 1000,
            }
        },
    )
    log_entry(ctx, {**entry, "outcome": "retry"})
    _count(ctx, "retry")
    return "retry", float(backoff_s)
