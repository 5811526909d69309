"""Who may see which rules and alarms: the catalog's permission decisions, applied to them.

A rule is visible with viewer on its scope and changed with editor on it; an alarm is visible
with viewer on its device and changed with editor on it. List filters reuse
`permissions_service.readable_filter` for the scope's (or device's) kind and move its fields
onto the rule's or alarm's own copies (`scope_id`/`scope_path`, `device_id`/`folder_path`).
"""

from __future__ import annotations

from typing import Any

from bson import ObjectId
from odmantic import AIOEngine

from app.auth.principal import Principal
from app.catalog.models import Device, Folder, Product
from app.catalog.permissions import service as permissions_service
from app.core.models import hex_ids

KINDS: dict[str, type[Folder] | type[Product] | type[Device]] = {
    "folder": Folder,
    "product": Product,
    "device": Device,
}


def remap(query: Any, *, id_field: str, path_field: str, new_path: str) -> Any:
    """Rewrite a readable filter on resources into one on documents that copy their fields."""
    if isinstance(query, list):
        return [
            remap(q, id_field=id_field, path_field=path_field, new_path=new_path) for q in query
        ]
    if not isinstance(query, dict):
        return str(query) if isinstance(query, ObjectId) else query
    out: dict[str, Any] = {}
    for key, value in query.items():
        if key == "_id":
            out[id_field] = hex_ids(value)
        elif key == path_field:
            out[new_path] = value
        elif key.startswith("$"):
            out[key] = remap(value, id_field=id_field, path_field=path_field, new_path=new_path)
        else:
            out[key] = value
    return out


async def readable_rules(engine: AIOEngine, *, principal: Principal) -> dict[str, Any]:
    """A filter on `alert_rules` matching the rules whose scope the caller can see."""
    if principal.is_admin:
        return {}
    clauses = []
    for name, model in KINDS.items():
        readable = await permissions_service.readable_filter(
            engine, principal=principal, model=model
        )
        mapped = remap(
            readable, id_field="scope_id", path_field=model.kind.path_field, new_path="scope_path"
        )
        clauses.append({"$and": [{"scope_type": name}, mapped]} if mapped else {"scope_type": name})
    return {"$or": clauses}


async def readable_alarms(engine: AIOEngine, *, principal: Principal) -> dict[str, Any]:
    """A filter on `alarms` matching the alarms of devices the caller can see."""
    readable = await permissions_service.readable_filter(engine, principal=principal, model=Device)
    mapped: dict[str, Any] = remap(
        readable, id_field="device_id", path_field="folder_path", new_path="folder_path"
    )
    return mapped
