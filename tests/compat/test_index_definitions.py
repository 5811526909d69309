"""Index rules real MongoDB enforces and the embedded server does not (mongo-compat row 12).

- A unique index admits one document without its key, and then refuses the next: every
  unique key the app declares is a required, non-null field of its model, or the index is
  partial on documents that have it (`{"$type": "string"}`); the embedded server ignores the
  partial filter but admits any number of missing keys, so both agree.
- Creating an index again with other options fails on MongoDB (IndexOptionsConflict /
  IndexKeySpecsConflict), at start-up: the schema declares each key pattern once, and changes
  go through a migration (app/migrations), never a silent redefinition.

Both are checked on the declarations themselves, so they hold whichever server runs the suite.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from odmantic import Model
from pymongo import IndexModel

from app import schema
from app.core.config import Settings


def declared(settings: Settings) -> list[tuple[str, IndexModel, type[Model] | None]]:
    """Every index the migrations create: (collection, index, model or None)."""
    found: list[tuple[str, IndexModel, type[Model] | None]] = []
    for model in schema.models():
        config: Any = model.model_config
        for idx in config["indexes"]():
            found.append((config["collection"], idx, model))
    for spec in schema.collections_(settings):
        found.extend((spec.name, idx, None) for idx in spec.indexes)
    return found


def _requires_value(condition: Any) -> bool:
    """A partial filter condition that leaves out documents missing the field (or null)."""
    return isinstance(condition, dict) and (
        condition.get("$exists") is True or condition.get("$type") not in (None, "null")
    )


def _options(idx: IndexModel) -> dict[str, Any]:
    return {k: v for k, v in idx.document.items() if k not in ("key", "name")}


class TestUniqueKeysAlwaysPresent:
    def test_every_unique_key_is_a_required_non_null_field(self, settings: Settings) -> None:
        problems = []
        for collection, idx, model in declared(settings):
            if not idx.document.get("unique") or model is None:
                continue
            partial = idx.document.get("partialFilterExpression") or {}
            for field_name in idx.document["key"]:
                if _requires_value(partial.get(field_name)):
                    continue  # documents without the key are not in the index at all
                info = model.model_fields.get(field_name.split(".")[0])
                if info is None or not info.is_required() and info.default is None:
                    problems.append(f"{collection}.{field_name}")
                elif info.annotation is not None and type(None) in getattr(
                    info.annotation, "__args__", ()
                ):
                    problems.append(f"{collection}.{field_name} may be null")
        assert problems == []

    def test_raw_collections_have_no_unique_index_on_optional_keys(
        self, settings: Settings
    ) -> None:
        # Raw collections (written through motor) are listed here with the writer that always
        # sets the key; a new unique index on them must be added here after checking it.
        known = {("idempotency_keys", ("device_id", "key"))}
        for collection, idx, model in declared(settings):
            if model is None and idx.document.get("unique"):
                assert (collection, tuple(idx.document["key"])) in known


class TestEachKeyPatternDeclaredOnce:
    def test_no_pattern_with_two_option_sets(self, settings: Settings) -> None:
        by_pattern: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
        for collection, idx, _ in declared(settings):
            by_pattern[(collection, *idx.document["key"].items())].append(_options(idx))
        clashes = {k: v for k, v in by_pattern.items() if len(v) > 1}
        assert clashes == {}
