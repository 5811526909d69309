"""Alert rules: create, read, list, change and delete, with editor on the rule's scope."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from odmantic import AIOEngine

from app.alerts import access
from app.alerts import service as alarms_service
from app.alerts.exceptions import InvalidCondition, RuleNotFound, TooManyRules
from app.alerts.models import AlertRule, ConditionType
from app.alerts.schemas import RuleCreate, RuleFilters, RuleUpdate
from app.auth.principal import Principal
from app.catalog import crud
from app.catalog.permissions.models import Role
from app.catalog.permissions.service import creator_uid
from app.core import collections, db
from app.core.config import Settings
from app.core.db import database
from app.core.errors import NotFound
from app.core.models import utcnow
from app.core.pagination import PageParams, find_page

if TYPE_CHECKING:
    from app.core.services import Services


def _is_timed(condition: dict[str, Any]) -> bool:
    kind = condition["type"]
    return kind == ConditionType.NO_DATA or (
        kind == ConditionType.THRESHOLD and bool(condition.get("for_s"))
    )


def _check_bounds(condition: dict[str, Any], settings: Settings) -> None:
    if condition["type"] == ConditionType.ANOMALY:
        if condition["window"] > settings.alert_anomaly_window_max:
            raise InvalidCondition(f"window must be at most {settings.alert_anomaly_window_max}")
    if condition["type"] == ConditionType.RATE and condition.get("n") is not None:
        if condition["n"] >= settings.alert_rate_points_max:
            raise InvalidCondition(
                f"n must be below {settings.alert_rate_points_max} (ALERT_RATE_POINTS_MAX)"
            )


async def _scope(
    engine: AIOEngine, *, principal: Principal, scope_type: str, scope_id: str, role: Role
) -> Any:
    return await crud.get_for(
        engine, access.KINDS[scope_type], principal=principal, resource_id=scope_id, role=role
    )


async def create(services: Services, *, principal: Principal, rule_in: RuleCreate) -> AlertRule:
    """Store a rule on a scope the caller may edit (409 past ALERT_RULES_PER_SCOPE_MAX)."""
    engine, settings = services.engine, services.settings
    created_by = creator_uid(principal)
    resource = await _scope(
        engine,
        principal=principal,
        scope_type=rule_in.scope.type,
        scope_id=rule_in.scope.id,
        role=Role.EDITOR,
    )
    condition = rule_in.condition.model_dump(mode="json", exclude_none=True)
    _check_bounds(condition, settings)
    existing = await db.collection(engine, AlertRule).count_documents(
        {"scope_type": rule_in.scope.type, "scope_id": rule_in.scope.id}
    )
    if existing >= settings.alert_rules_per_scope_max:
        raise TooManyRules(
            f"a {rule_in.scope.type} carries at most {settings.alert_rules_per_scope_max} rules"
        )
    rule = AlertRule(
        name=rule_in.name,
        scope_type=rule_in.scope.type,
        scope_id=rule_in.scope.id,
        scope_path=resource.access_path,
        severity=rule_in.severity,
        enabled=rule_in.enabled,
        condition_type=ConditionType(condition["type"]),
        condition=condition,
        notify=rule_in.notify.model_dump(mode="json"),
        timed=_is_timed(condition),
        created_by=created_by,
    )
    await db.insert(engine, rule)
    await services.alert_rules.changed()
    return rule


async def get_for(
    engine: AIOEngine, *, principal: Principal, rule_id: str, role: Role
) -> AlertRule:
    """A rule whose scope the caller holds `role` on (404 when it cannot see the scope)."""
    rule = await db.find_by_id(engine, AlertRule, rule_id)
    if rule is None:
        raise RuleNotFound()
    try:
        await _scope(
            engine,
            principal=principal,
            scope_type=rule.scope_type,
            scope_id=rule.scope_id,
            role=role,
        )
    except NotFound:
        raise RuleNotFound() from None
    return rule


async def list_(
    engine: AIOEngine, *, principal: Principal, page: PageParams, filters_in: RuleFilters
) -> tuple[list[AlertRule], str | None]:
    """One page of the rules whose scope the caller can see."""
    readable = await access.readable_rules(engine, principal=principal)
    filters = crud.equal_to(scope_type=filters_in.scope_type, scope_id=filters_in.scope_id)
    return await find_page(engine, AlertRule, page, readable, *filters)


async def update(services: Services, *, rule: AlertRule, rule_in: RuleUpdate) -> AlertRule:
    """Apply changes to a rule (the caller's editor role was checked loading it)."""
    engine, settings = services.engine, services.settings
    values: dict[str, Any] = {}
    given = rule_in.model_fields_set
    if "name" in given and rule_in.name is not None:
        values["name"] = rule_in.name
    if "severity" in given and rule_in.severity is not None:
        values["severity"] = rule_in.severity
    if "enabled" in given and rule_in.enabled is not None:
        values["enabled"] = rule_in.enabled
    if "condition" in given and rule_in.condition is not None:
        condition = rule_in.condition.model_dump(mode="json", exclude_none=True)
        _check_bounds(condition, settings)
        values.update(
            condition=condition,
            condition_type=ConditionType(condition["type"]),
            timed=_is_timed(condition),
        )
    if "notify" in given and rule_in.notify is not None:
        values["notify"] = rule_in.notify.model_dump(mode="json")
    if not values:
        return rule
    updated = rule.model_copy(update={**values, "updated_at": utcnow()})
    await db.replace(engine, updated)
    if "condition" in values or values.get("enabled") is False:
        # The old condition's alarms and state mean nothing for the new one.
        await _reset(engine, rule=rule, reason="rule changed")
    await services.alert_rules.changed()
    return updated


async def delete(services: Services, *, rule: AlertRule) -> None:
    """Delete a rule; its active alarms are cleared (kept as history) and its state dropped."""
    await db.delete(services.engine, rule)
    await _reset(services.engine, rule=rule, reason="rule deleted")
    await services.alert_rules.changed()


async def _reset(engine: AIOEngine, *, rule: AlertRule, reason: str) -> None:
    await alarms_service.clear_rule_alarms(engine, rule=rule, reason=reason)
    await database(engine)[collections.ALERT_STATES].delete_many({"rule_id": str(rule.id)})
