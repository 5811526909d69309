"""Mounts every domain router under /api/v1."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from app.auth.router import router as auth_router
from app.devices.router import router as devices_router
from app.folders.router import router as folders_router
from app.permissions.router import router as permissions_router
from app.products.router import router as products_router
from app.ratelimit.dependencies import enforce_rate_limit
from app.readings.router import router as readings_router
from app.users.router import router as users_router

# Every request under /api/v1 passes the rate limiter (app/ratelimit).
api_router = APIRouter(prefix="/api/v1", dependencies=[Depends(enforce_rate_limit)])
api_router.include_router(auth_router)
api_router.include_router(users_router)
api_router.include_router(readings_router)
api_router.include_router(folders_router)
api_router.include_router(products_router)
api_router.include_router(devices_router)
api_router.include_router(permissions_router)
