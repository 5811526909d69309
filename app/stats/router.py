"""Fleet statistics under `/stats`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.auth.dependencies import UserPrincipal
from app.catalog.exceptions import FolderNotFound
from app.core.models import IdStr
from app.core.openapi import raises
from app.core.routing import API_PREFIX
from app.core.services import ServicesDep
from app.stats import service as stats_service
from app.stats.schemas import FleetStats

router = APIRouter(prefix=f"{API_PREFIX}/stats", tags=["stats"])


@router.get("", response_model=FleetStats)
@raises(FolderNotFound)
async def fleet_stats(
    services: ServicesDep,
    principal: UserPrincipal,
    folder_id: Annotated[IdStr | None, Query(description="only devices below this folder")] = None,
    product_id: Annotated[IdStr | None, Query(description="only devices of this product")] = None,
) -> FleetStats:
    """Devices by status and product, readings per minute, active alarms, newest last seen."""
    return await stats_service.fleet(
        services.engine,
        services.redis,
        principal=principal,
        folder_id=folder_id,
        product_id=product_id,
        offline_after_s=services.settings.device_offline_after_s,
        alarm_counter=services.alarm_counter,
        device_counters=services.device_counters,
        cache_s=services.settings.stats_cache_s,
    )
