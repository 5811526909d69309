"""Which enabled rules apply to a device, kept in memory and cleared when any rule changes.

Evaluation asks once per flush for all the flush's devices: cached devices cost nothing; the
others cost two queries for the whole flush (their devices, then every rule on their
device, product or folders). Rule changes are announced on a Redis channel that every API
process follows; a process that is not subscribed right now (Redis away) does not trust its
cache and looks rules up on every flush instead, so no change is ever missed for long.
`ALERT_RULE_CACHE_S` bounds what nobody announces (a device moved to another folder).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from odmantic import AIOEngine
from redis.asyncio import Redis

from app.alerts.alarms import DeviceInfo
from app.alerts.conditions import Compiled, compile_rule
from app.alerts.models import AlertRule
from app.catalog.models import Device
from app.core import db, feeds
from app.core.models import parse_object_id

logger = logging.getLogger(__name__)

CHANNEL = "sensorhub:alert-rules:changed"
MAX_DEVICES = 100_000
_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class DeviceRules:
    """A device and the compiled rules that apply to it."""

    device: DeviceInfo
    rules: tuple[Compiled, ...]


class RuleCache(feeds.ChannelFollower):
    """`device id -> DeviceRules`, trusted only while the change feed is live (see module)."""

    channel = CHANNEL
    lost_warning = "alert rule change feed lost; looking rules up every flush"

    def __init__(
        self, *, ttl_s: float, rate_points_max: int, publisher: Redis | None = None
    ) -> None:
        self.ttl_s = ttl_s
        self.rate_points_max = rate_points_max
        self.publisher = publisher
        self._entries: dict[str, tuple[float, DeviceRules]] = {}
        self._compiled: dict[tuple[str, Any], Compiled] = {}
        self._generation = 0
        self.lookups = 0  # queries made (tests check one lookup per flush)

    def clear(self) -> None:
        """Forget every cached device (rules changed somewhere)."""
        self._generation += 1
        self._entries.clear()

    def set_live(self, live: bool) -> None:
        """Start or stop trusting the cache; either way it starts empty."""
        self._live = live
        self.clear()

    async def changed(self) -> None:
        """Clear this process's cache and tell every other process (after a rule write)."""
        self.clear()
        if self.publisher is None:
            return
        try:
            await self.publisher.publish(CHANNEL, "1")
        except Exception as exc:  # they fall back to the TTL; the change is stored
            logger.error("alert rule change not broadcast", extra={"error": type(exc).__name__})

    async def for_devices(
        self, engine: AIOEngine, device_ids: Iterable[str]
    ) -> dict[str, DeviceRules]:
        """The rules of each device (devices that no longer exist are left out)."""
        now = time.monotonic()
        found: dict[str, DeviceRules] = {}
        missing: list[str] = []
        for device_id in device_ids:
            entry = self._entries.get(device_id) if self._live else None
            if entry is not None and entry[0] > now:
                found[device_id] = entry[1]
            else:
                missing.append(device_id)
        if not missing:
            return found
        generation = self._generation
        loaded = await self._load(engine, missing)
        found.update(loaded)
        if self._live and self.ttl_s > 0 and generation == self._generation:
            if len(self._entries) + len(loaded) > MAX_DEVICES:
                self._entries.clear()
            expires = now + self.ttl_s
            for device_id, rules in loaded.items():
                self._entries[device_id] = (expires, rules)
        return found

    async def _load(self, engine: AIOEngine, device_ids: list[str]) -> dict[str, DeviceRules]:
        devices: dict[str, DeviceInfo] = {}
        oids = [oid for d in device_ids if (oid := parse_object_id(d)) is not None]
        for start in range(0, len(oids), _CHUNK):
            chunk: list[ObjectId] = oids[start : start + _CHUNK]
            cursor = db.collection(engine, Device).find(
                {"_id": {"$in": chunk}}, {"name": 1, "product_id": 1, "folder_path": 1}
            )
            async for doc in cursor:
                info = DeviceInfo(
                    id=str(doc["_id"]),
                    name=doc.get("name"),
                    product_id=str(doc.get("product_id") or ""),
                    folder_path=tuple(doc.get("folder_path") or ()),
                )
                devices[info.id] = info
        self.lookups += 1
        if not devices:
            return {}
        products = sorted({d.product_id for d in devices.values()})
        folders = sorted({f for d in devices.values() for f in d.folder_path})
        scopes: list[dict[str, Any]] = [
            {"scope_type": "device", "scope_id": {"$in": sorted(devices)}},
            {"scope_type": "product", "scope_id": {"$in": products}},
        ]
        if folders:
            scopes.append({"scope_type": "folder", "scope_id": {"$in": folders}})
        rules = await db.find_many(
            engine, AlertRule, {"$and": [{"enabled": True}, {"$or": scopes}]}
        )
        compiled = [self._compile(rule) for rule in rules]
        result: dict[str, DeviceRules] = {}
        for device in devices.values():
            mine = tuple(
                c
                for c in compiled
                if (c.rule.scope_type == "device" and c.rule.scope_id == device.id)
                or (c.rule.scope_type == "product" and c.rule.scope_id == device.product_id)
                or (c.rule.scope_type == "folder" and c.rule.scope_id in device.folder_path)
            )
            result[device.id] = DeviceRules(device=device, rules=mine)
        return result

    def _compile(self, rule: AlertRule) -> Compiled:
        key = (str(rule.id), rule.updated_at)
        compiled = self._compiled.get(key)
        if compiled is None:
            if len(self._compiled) > MAX_DEVICES:
                self._compiled.clear()
            compiled = compile_rule(rule, rate_points_max=self.rate_points_max)
            self._compiled[key] = compiled
        return compiled

    @property
    def wants_feed(self) -> bool:
        """False when caching is off (`ALERT_RULE_CACHE_S` 0)."""
        return self.ttl_s > 0

    def feed_live(self, live: bool) -> None:
        """The change feed is subscribed (True) or was lost (False)."""
        self.set_live(live)

    def feed_message(self, data: str) -> None:
        """Some rule changed: forget every device's rule list."""
        self.clear()
