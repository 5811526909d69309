"""The `Idempotency-Key` header, one rule for every route that honours it."""

from __future__ import annotations

import re

from app.core.errors import Unprocessable

_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


class IdempotencyKeyReused(Unprocessable):
    """The key was used before with a different request body."""

    type = "idempotency-key-reused"
    title = "Idempotency-Key reused with a different body"


class IdempotencyKeyInvalid(Unprocessable):
    """The Idempotency-Key header is empty, too long or not printable ASCII."""

    type = "idempotency-key-invalid"
    title = "Invalid Idempotency-Key"


def check_key(key: str) -> str:
    """The key when it is 1-255 printable ASCII characters; 422 otherwise."""
    if not _KEY.fullmatch(key):
        raise IdempotencyKeyInvalid("Idempotency-Key must be 1 to 255 printable ASCII characters")
    return key
