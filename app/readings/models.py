"""Stored shapes of the readings domain (raw collections: the hot path skips ODMantic).

`readings` (`app.core.collections.READINGS`, time-series; timeField `ts`, metaField `meta`):
    {"_id": ObjectId, "ts": datetime, "meta": {"device_id": hex, "product_id": hex},
     "m": {<key>: number | bool | str}, "quality": "suspect", "suspect": [<name>, ...]}
    (`quality` and `suspect` only when a value is outside its metric's min/max).
`device_latest` (one per device, `_id` = device id hex):
    {"_id": hex, "product_id": hex, "m": {<key>: {"ts": datetime, "v": value[, "suspect": true]}}}
`idempotency_keys` (unique on (device_id, key), TTL on `expires_at`):
    {"_id": ObjectId, "device_id": hex, "key": str, "fingerprint": hex, "state": "pending"|"done",
     "lease_until_ms": int, "response": {...} | None, "expires_at": datetime}

Metric names may contain dots, which MongoDB reads as paths: a stored key is the name with
`.` replaced by `:` (a character names cannot contain).
"""

from __future__ import annotations

SUSPECT = "suspect"


def field_key(name: str) -> str:
    """The stored key of a metric name (dots cannot appear in a queryable field name)."""
    return name.replace(".", ":")


def metric_name(key: str) -> str:
    """The metric name of a stored key."""
    return key.replace(":", ".")
