"""The `Idempotency-Key` header, one rule for every route that honours it."""

from __future__ import annotations

import re
from typing import Any

from fastapi import Header

from app.core.errors import Unprocessable

# 1-255 printable ASCII characters: the header's OpenAPI pattern and the check below.
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
_KEY = re.compile(KEY_PATTERN)


def key_header(description: str) -> Any:
    """The optional `Idempotency-Key` header of a route, documented with its pattern."""
    return Header(alias="Idempotency-Key", pattern=KEY_PATTERN, description=description)


class IdempotencyKeyReused(Unprocessable):
    """The key was used before with a different request body."""

    type = "idempotency-key-reused"
    title = "Idempotency-Key reused with a different body"


class IdempotencyKeyInvalid(Unprocessable):
    """The Idempotency-Key header is empty, too long or not printable ASCII."""

    type = "idempotency-key-invalid"
    title = "Invalid Idempotency-Key"


def is_valid_key(key: str) -> bool:
    """Whether `key` is 1-255 printable ASCII characters."""
    return _KEY.fullmatch(key) is not None


def check_key(key: str) -> str:
    """The key when it is 1-255 printable ASCII characters; 422 otherwise."""
    if not is_valid_key(key):
        raise IdempotencyKeyInvalid("Idempotency-Key must be 1 to 255 printable ASCII characters")
    return key
