"""Alert rules under `/alert-rules` and alarms under `/alarms`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from app.alerts import rules as rules_service
from app.alerts import service as alarms_service
from app.alerts.exceptions import (
    AlarmAlreadyCleared,
    AlarmNotFound,
    InvalidCondition,
    RuleNotFound,
    TooManyRules,
)
from app.alerts.models import Alarm, AlertRule
from app.alerts.notifier import Notifier
from app.alerts.schemas import (
    AlarmChange,
    AlarmCounts,
    AlarmFilters,
    AlarmRead,
    RuleCreate,
    RuleFilters,
    RuleRead,
    RuleUpdate,
)
from app.auth.dependencies import CurrentPrincipal, UserPrincipal
from app.auth.principal import Principal
from app.catalog.dependencies import visible
from app.catalog.exceptions import DeviceNotFound, FolderNotFound, ProductNotFound
from app.catalog.permissions.exceptions import NotAllowed
from app.catalog.permissions.models import Role
from app.core.models import IdPath, IdStr
from app.core.openapi import raises
from app.core.pagination import Listing, Page
from app.core.responses import NO_CONTENT
from app.core.routing import API_PREFIX
from app.core.services import Services, ServicesDep

router = APIRouter(prefix=API_PREFIX, tags=["alerts"])


def _notifier(services: Services) -> Notifier:
    return Notifier(services.engine, services.celery, services.redis)


def _rule_dep(role: Role):  # type: ignore[no-untyped-def]
    @raises(RuleNotFound, NotAllowed)
    async def load(
        rule_id: IdPath, services: ServicesDep, principal: CurrentPrincipal
    ) -> AlertRule:
        return await rules_service.get_for(
            services.engine, principal=principal, rule_id=rule_id, role=role
        )

    return load


def _alarm_dep(role: Role):  # type: ignore[no-untyped-def]
    @raises(AlarmNotFound, NotAllowed)
    async def load(alarm_id: IdPath, services: ServicesDep, principal: CurrentPrincipal) -> Alarm:
        return await alarms_service.get_for(
            services.engine, principal=principal, alarm_id=alarm_id, role=role
        )

    return load


RuleForView = Annotated[AlertRule, Depends(_rule_dep(Role.VIEWER))]
RuleForEdit = Annotated[AlertRule, Depends(_rule_dep(Role.EDITOR))]
AlarmForEdit = Annotated[Alarm, Depends(_alarm_dep(Role.EDITOR))]


@dataclass(frozen=True, slots=True)
class _AlarmChange:
    """A user's change to one alarm they may edit (acknowledge or clear), with its reason."""

    alarm: Alarm
    services: Services
    principal: Principal
    reason: str | None

    async def apply(self, change: Callable[..., Awaitable[Alarm]]) -> AlarmRead:
        """Make the change (`alarms_service.acknowledge` or `.clear`); the alarm as it is now."""
        changed = await change(
            self.services.engine,
            principal=self.principal,
            alarm=self.alarm,
            reason=self.reason,
            notifier=_notifier(self.services),
        )
        return AlarmRead.of(changed)


async def _alarm_change(
    alarm: AlarmForEdit,
    services: ServicesDep,
    principal: UserPrincipal,
    body: AlarmChange | None = None,
) -> _AlarmChange:
    return _AlarmChange(alarm, services, principal, body.reason if body else None)


AlarmChangeDep = Annotated[_AlarmChange, Depends(_alarm_change)]
RuleListing = Annotated[Listing[RuleFilters], Depends(visible(RuleFilters))]
AlarmListing = Annotated[Listing[AlarmFilters], Depends(visible(AlarmFilters))]


@router.post("/alert-rules", response_model=RuleRead, status_code=status.HTTP_201_CREATED)
@raises(TooManyRules, InvalidCondition, NotAllowed, FolderNotFound, ProductNotFound)
@raises(DeviceNotFound)
async def create_rule(
    body: RuleCreate, services: ServicesDep, principal: UserPrincipal
) -> RuleRead:
    """Create a rule on a product, folder or device you may edit."""
    rule = await rules_service.create(services, principal=principal, rule_in=body)
    return RuleRead.of(rule)


@router.get("/alert-rules", response_model=Page[RuleRead])
async def list_rules(listing: RuleListing) -> Page[RuleRead]:
    """Rules on scopes you can see."""
    return await listing.page_of(Page[RuleRead], rules_service.list_, RuleRead.of)


@router.get("/alert-rules/{rule_id}", response_model=RuleRead)
async def get_rule(rule: RuleForView) -> RuleRead:
    """One rule on a scope you can see."""
    return RuleRead.of(rule)


@router.patch("/alert-rules/{rule_id}", response_model=RuleRead)
@raises(InvalidCondition)
async def update_rule(body: RuleUpdate, rule: RuleForEdit, services: ServicesDep) -> RuleRead:
    """Change a rule (editor on its scope); a new condition resets its alarms and state."""
    updated = await rules_service.update(services, rule=rule, rule_in=body)
    return RuleRead.of(updated)


@router.delete("/alert-rules/{rule_id}", **NO_CONTENT)
async def delete_rule(rule: RuleForEdit, services: ServicesDep) -> None:
    """Delete a rule (editor on its scope); its active alarms are cleared."""
    await rules_service.delete(services, rule=rule)


@router.get("/alarms", response_model=Page[AlarmRead])
@raises(FolderNotFound)
async def list_alarms(listing: AlarmListing) -> Page[AlarmRead]:
    """Alarms of devices you can see (a device key: its own), oldest first."""
    return await listing.page_of(Page[AlarmRead], alarms_service.list_, AlarmRead.of)


@router.get("/alarms/counts", response_model=AlarmCounts)
@raises(FolderNotFound)
async def alarm_counts(
    services: ServicesDep,
    principal: CurrentPrincipal,
    folder_id: Annotated[IdStr | None, Query(description="only alarms below this folder")] = None,
) -> AlarmCounts:
    """Alarms you can see, counted by severity and state."""
    return await alarms_service.counts(services.engine, principal=principal, folder_id=folder_id)


@router.post("/alarms/{alarm_id}/ack", response_model=AlarmRead)
async def acknowledge_alarm(change: AlarmChangeDep) -> AlarmRead:
    """Acknowledge an alarm (editor on its device); idempotent."""
    return await change.apply(alarms_service.acknowledge)


@router.post("/alarms/{alarm_id}/clear", response_model=AlarmRead)
@raises(AlarmAlreadyCleared)
async def clear_alarm(change: AlarmChangeDep) -> AlarmRead:
    """Clear an active alarm by hand (editor on its device); 409 if already cleared."""
    return await change.apply(alarms_service.clear)
