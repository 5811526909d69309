"""Checks of what senders and devices put in a command: size, storable keys, the JSON Schema."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from referencing.exceptions import Unresolvable

from app.commands.exceptions import CommandInputInvalid, CommandParamsInvalid

MAX_DEPTH = 32
MAX_ERRORS = 20


def _bad_key(key: str) -> bool:
    return key.startswith("$") or "." in key or "\x00" in key


def check_document(value: dict[str, Any], *, what: str, max_bytes: int) -> str:
    """The compact JSON of `value` when it is small, shallow and storable; 422 otherwise."""
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"), sort_keys=True)
    except ValueError:
        raise CommandInputInvalid(f"{what} must be finite JSON") from None
    if len(text.encode()) > max_bytes:
        raise CommandInputInvalid(f"{what} is over {max_bytes} bytes of JSON")
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise CommandInputInvalid(f"{what} nests deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            for key, child in item.items():
                if _bad_key(key):
                    raise CommandInputInvalid(
                        f"{what} keys may not start with '$' or contain '.' or NUL: {key[:50]!r}"
                    )
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return text


@lru_cache(maxsize=512)
def _validator(schema_json: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_json))


def validate(schema: dict[str, Any], params: dict[str, Any]) -> None:
    """422 with one entry per violation (up to 20) when `params` breaks `schema`."""
    key = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    try:
        errors = sorted(_validator(key).iter_errors(params), key=lambda e: list(e.path))
        problems = [
            {"loc": ["params", *e.absolute_path], "msg": e.message, "type": str(e.validator)}
            for e in errors[:MAX_ERRORS]
        ]
    except (SchemaError, Unresolvable):  # a schema stored before the save-time checks existed
        raise CommandParamsInvalid(
            "The product's params schema cannot be used", errors=[]
        ) from None
    if problems:
        raise CommandParamsInvalid(
            f"{len(errors)} problem(s) with params against the command's schema",
            errors=problems,
        )


def fingerprint(*parts: Any) -> str:
    """What identifies a send (a retry sends the same name, params and ttl)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
