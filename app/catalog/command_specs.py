"""The commands a product declares: name, a JSON Schema for the params, default TTL, result.

Stored on the product (catalog) and used when a command is sent (app.commands). The params
schema is checked here, when the product is saved: it must be a valid JSON Schema (draft
2020-12, checked with `jsonschema`), small, and self-contained (no remote `$ref`), so that
validating params later can neither fail on the schema, nor fetch anything, nor run a
regular expression (no `pattern`, `patternProperties` or `format: regex`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from app.catalog.telemetry import METRIC_NAME_PATTERN

# Bounds of a declaration (like the telemetry schema's): they bound the product document and
# the cost of validating params against a schema on every send.
MAX_COMMANDS = 50
MAX_SCHEMA_BYTES = 16_384
MAX_SCHEMA_DEPTH = 32
MAX_TTL_S = 30 * 86_400
DEFAULT_TTL_S = 3600

CommandName = Annotated[str, Field(pattern=METRIC_NAME_PATTERN)]


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a JSON value, stopping once past `limit`."""
    if limit < 0:
        return 1
    if isinstance(value, dict):
        return 1 + max((_depth(v, limit - 1) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v, limit - 1) for v in value), default=0)
    return 0


# Keywords whose value maps names to subschemas (the names are not keywords), and keywords
# whose value is data, not a schema.
_SCHEMA_MAPS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
)
_DATA = frozenset({"enum", "const", "default", "examples"})
# Regular expressions would run on every send with Python's backtracking `re`: a pattern like
# `(a+)+$` could hold an API process for minutes (ReDoS), so schemas may not use them.
_REGEX_KEYWORDS = frozenset({"pattern", "patternProperties"})


def _keywords(schema: Any) -> Iterator[tuple[str, Any]]:
    """Every (keyword, value) of a schema and its subschemas."""
    if isinstance(schema, list):
        for item in schema:
            yield from _keywords(item)
        return
    if not isinstance(schema, dict):
        return
    for key, value in schema.items():
        yield key, value
        if key in _DATA:
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            for sub in value.values():
                yield from _keywords(sub)
        else:
            yield from _keywords(value)


def _unsupported(schema: dict[str, Any]) -> str | None:
    """Why the schema cannot be used here (a remote reference, a regex), or None."""
    for key, value in _keywords(schema):
        if key in ("$ref", "$dynamicRef") and not (
            isinstance(value, str) and value.startswith("#")
        ):
            return f"params schema may only use local references (#...), not {value!r}"
        if key in _REGEX_KEYWORDS or (key == "format" and value == "regex"):
            return f"params schema may not use {key!r} (regular expressions are not supported)"
    return None


def check_params_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema when it is a valid, bounded, self-contained JSON Schema; ValueError if not."""
    try:
        size = len(json.dumps(schema, allow_nan=False, separators=(",", ":")))
    except ValueError:
        raise ValueError("params must be a JSON Schema (finite JSON)") from None
    if size > MAX_SCHEMA_BYTES:
        raise ValueError(f"params schema is {size} bytes; at most {MAX_SCHEMA_BYTES} allowed")
    if _depth(schema, MAX_SCHEMA_DEPTH) > MAX_SCHEMA_DEPTH:
        raise ValueError(f"params schema nests deeper than {MAX_SCHEMA_DEPTH} levels")
    reason = _unsupported(schema)
    if reason:
        raise ValueError(reason)
    if schema.get("type", "object") != "object":
        raise ValueError('params schema must describe an object ("type": "object")')
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(root)"
        raise ValueError(f"params is not a valid JSON Schema at {where}: {exc.message}") from None
    return schema


class CommandSpecRead(BaseModel):
    """One command a device of the product understands, as stored (checked when saved)."""

    name: CommandName
    description: str | None = Field(default=None, max_length=500)
    params: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object"},
        description="JSON Schema (draft 2020-12) of the command's params, an object",
    )
    ttl_s: int = Field(
        default=DEFAULT_TTL_S,
        ge=1,
        le=MAX_TTL_S,
        description="default seconds a command waits for delivery before it expires",
    )
    result_expected: bool = Field(
        default=False, description="whether the device answers with a `result` object"
    )

    @field_validator("params", mode="before")
    @classmethod
    def _stored_as_json(cls, value: Any) -> Any:
        """Stored schemas are JSON text (see `stored`)."""
        return json.loads(value) if isinstance(value, str) else value

    def stored(self) -> dict[str, Any]:
        """The document kept on the product: the params schema as JSON text, because MongoDB
        refuses `$`-prefixed keys (`$ref`, `$defs`, `$schema`) inside an update's values."""
        return {**self.model_dump(mode="json"), "params": json.dumps(self.params)}


class CommandSpec(CommandSpecRead):
    """One command as a product editor declares it: the params schema is checked."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("params")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_params_schema(value)


def unique_names(specs: list[CommandSpec]) -> list[CommandSpec]:
    """The specs when their names are unique; ValueError otherwise."""
    names = [s.name for s in specs]
    if len(names) != len(set(names)):
        raise PydanticCustomError("command_names_unique", "command names must be unique")
    return specs


CommandSpecs = Annotated[
    list[CommandSpec], Field(max_length=MAX_COMMANDS), AfterValidator(unique_names)
]


def find(specs: list[dict[str, Any]], name: str) -> CommandSpecRead | None:
    """The stored spec called `name`, or None."""
    for raw in specs:
        if raw.get("name") == name:
            return CommandSpecRead.model_validate(raw)
    return None
