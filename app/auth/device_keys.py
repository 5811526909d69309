"""Device API keys: random, shown once, stored as a SHA-256 hash with a short visible prefix.

A key has at least 32 random bytes, so a fast hash is enough (no password stretching needed):
the hash is only a lookup value that cannot be turned back into the key.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

KEY_PREFIX = "dk_"
_RANDOM_BYTES = 32
VISIBLE_CHARS = 8


@dataclass(frozen=True, slots=True)
class NewDeviceKey:
    """A freshly made key: `key` is shown to the caller once; the rest is stored."""

    key: str
    key_hash: str
    key_prefix: str


def hash_key(key: str) -> str:
    """The stored form of a key (hex SHA-256)."""
    return hashlib.sha256(key.encode()).hexdigest()


def generate() -> NewDeviceKey:
    """Make a new device key, e.g. `dk_3q2...`."""
    key = KEY_PREFIX + secrets.token_urlsafe(_RANDOM_BYTES)
    return NewDeviceKey(
        key=key, key_hash=hash_key(key), key_prefix=key[: len(KEY_PREFIX) + VISIBLE_CHARS]
    )


def looks_like_device_key(token: str) -> bool:
    """True for a bearer token in device-key form (`dk_...`)."""
    return token.startswith(KEY_PREFIX) and len(token) > len(KEY_PREFIX) + 16
