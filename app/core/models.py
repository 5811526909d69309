"""Portable MongoDB patterns shared by every domain (README, "Portable MongoDB rules").

- `_id` stays an ObjectId; references to other documents are stored as hex strings.
- Response schemas use `IdStr`, which accepts an ObjectId or its hex string (aggregation
  results come back as either, depending on the server).
- Time buckets are computed with `$dateDiff` from an aligned origin, never with date
  arithmetic or `$dateTrunc`, which the embedded server gets wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from bson import ObjectId
from fastapi import Path
from odmantic import Field, Model
from odmantic.config import ODMConfigDict
from pydantic import BeforeValidator, StringConstraints
from pymongo import ASCENDING, IndexModel

HEX24 = r"^[0-9a-f]{24}$"


def _to_hex(value: Any) -> Any:
    if isinstance(value, ObjectId):
        return str(value)
    return value


def map_leaves(value: Any, leaf: Callable[[Any], Any]) -> Any:
    """A copy of a JSON-like value (dicts, lists, tuples) with `leaf` applied to the rest."""
    if isinstance(value, dict):
        return {k: map_leaves(v, leaf) for k, v in value.items()}
    if isinstance(value, list):
        return [map_leaves(v, leaf) for v in value]
    if isinstance(value, tuple):
        return tuple(map_leaves(v, leaf) for v in value)
    return leaf(value)


def hex_ids(value: Any) -> Any:
    """A copy of a JSON-like value with every ObjectId, at any depth, as its hex string."""
    return map_leaves(value, _to_hex)


# The constraint first, so that the JSON schema carries the pattern; the validator still runs
# before it (it wraps what is to its left).
IdStr = Annotated[str, StringConstraints(pattern=HEX24), BeforeValidator(_to_hex)]
"""An ObjectId as 24 lowercase hex characters, accepting an `ObjectId` too."""

IdPath = Annotated[
    str, Path(pattern=HEX24, description="an id: 24 lowercase hex characters (an ObjectId)")
]
"""A path parameter naming a stored document: anything else is refused (422)."""


if TYPE_CHECKING:

    class Document(Model):
        """Base of every stored model: an ObjectId `_id`, generated when not given."""

        id: ObjectId = Field(default_factory=ObjectId)

else:
    # ODMantic types `id` as required for type checkers although it is generated, and does not
    # support model inheritance at run time: stored models subclass `Model` itself, and type
    # checkers see the truthful `id` above.
    Document = Model


def index(*fields: str, **options: Any) -> IndexModel:
    """An ascending index on `fields` (options as pymongo's: `unique`, `expireAfterSeconds`)."""
    return IndexModel([(name, ASCENDING) for name in fields], **options)


def stored_in(collection: str, *indexes: IndexModel) -> ODMConfigDict:
    """The `model_config` of a model kept in `collection` with `indexes` (made at start-up)."""
    return ODMConfigDict(collection=collection, indexes=lambda: list(indexes))


def parse_object_id(value: str) -> ObjectId | None:
    """The ObjectId for a hex string, or None when it is not one (callers answer 404)."""
    if isinstance(value, str) and len(value) == 24 and ObjectId.is_valid(value):
        return ObjectId(value)
    return None


def utcnow() -> datetime:
    """The current time, timezone-aware UTC, truncated to milliseconds as BSON stores it."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_ms(ts: datetime) -> int:
    """Milliseconds since 1970 of an aware datetime: an exact, portable ordering key.

    The embedded server compares dates in update filters to the second; integers compare
    exactly on every server, so "only if newer" updates filter on this.
    """
    return (ts - _EPOCH) // timedelta(milliseconds=1)


BucketUnit = Literal["second", "minute", "hour", "day"]


def bucket_index_expr(
    *, origin: datetime, unit: BucketUnit, size: int, field: str = "$ts"
) -> dict[str, Any]:
    """Aggregation expression: index of the `size`-`unit` bucket `field` falls in, from `origin`.

    Portable to MongoDB 5.0+ and the embedded server; turn indexes back into datetimes in
    Python with `origin + index * size * unit`.
    """
    diff = {"$dateDiff": {"startDate": origin, "endDate": field, "unit": unit}}
    if size == 1:
        return diff
    return {"$floor": {"$divide": [diff, size]}}
