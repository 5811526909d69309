"""Mounts every domain router under /api/v1."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from app.alerts.router import router as alerts_router
from app.auth.quotas import enforce_rate_limit
from app.auth.router import router as auth_router
from app.catalog.router import router as catalog_router
from app.commands.router import router as commands_router
from app.live.router import router as live_router
from app.live.router import socket_router
from app.readings.router import router as readings_router
from app.stats.router import router as stats_router
from app.users.router import router as users_router

# Every API request passes the rate limiter (app/auth/quotas.py, app/ratelimit). Each domain
# router carries the full /api/v1 prefix itself (see app/core/routing.py).
api_router = APIRouter(dependencies=[Depends(enforce_rate_limit)])
api_router.include_router(auth_router)
api_router.include_router(users_router)
api_router.include_router(readings_router)
api_router.include_router(catalog_router)
api_router.include_router(commands_router)
api_router.include_router(alerts_router)
api_router.include_router(live_router)
api_router.include_router(stats_router)

__all__ = ["api_router", "socket_router"]
