"""API field types and rules shared by the catalog's request and response schemas."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Self

from odmantic import Model
from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator

# One line without control characters, and without leading or trailing spaces: what the
# schema says is exactly what is kept. The classes are spelled out (not `\s`, `.`), so that
# Python, Rust (pydantic-core) and ECMA regex engines (clients, the fuzzer) agree.
_SPACE_OR_CONTROL = r"\x00-\x20\x7f-\xa0\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000\ufeff"
_CONTROL = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
TRIMMED_LINE = rf"^[^{_SPACE_OR_CONTROL}]([^{_CONTROL}]*[^{_SPACE_OR_CONTROL}])?$"
Name = Annotated[str, StringConstraints(pattern=TRIMMED_LINE, min_length=1, max_length=100)]


def _patch_json_schema(schema: dict[str, Any], model: type[Any]) -> None:
    """At least one field; fields that may not be null are not nullable in the schema either."""
    schema["minProperties"] = 1
    for name in getattr(model, "not_nullable", ()):
        prop = schema.get("properties", {}).get(name)
        if prop is None or "anyOf" not in prop:
            continue
        kept = [option for option in prop["anyOf"] if option.get("type") != "null"]
        if len(kept) == 1:
            del prop["anyOf"]
            prop.pop("default", None)
            prop.update(kept[0])


class PatchBody(BaseModel):
    """A PATCH body: fields left out stay as they are; `null` clears optional fields only."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_patch_json_schema)

    # Fields that may be left out but not set to null.
    not_nullable: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _required_not_null(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("give at least one field to change")
        for name in self.not_nullable:
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class StoredView(BaseModel):
    """A response schema whose fields are read straight from a stored document."""

    @classmethod
    def of(cls, document: Model) -> Self:
        """The API view of a stored document."""
        return cls.model_validate(document.model_dump())
