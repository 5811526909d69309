"""Mounts every domain router under /api/v1."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from app.ratelimit.dependencies import enforce_rate_limit

# Every request under /api/v1 passes the rate limiter (app/ratelimit).
api_router = APIRouter(prefix="/api/v1", dependencies=[Depends(enforce_rate_limit)])
