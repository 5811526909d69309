"""Dependencies for the clients made in the lifespan, as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from celery import Celery
from fastapi import Depends, Request
from odmantic import AIOEngine
from redis.asyncio import Redis

from app.core.config import Settings


async def get_settings_dep(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


async def get_engine(request: Request) -> AIOEngine:
    """The ODMantic engine made in the lifespan."""
    engine: AIOEngine = request.app.state.engine
    return engine


async def get_redis(request: Request) -> Redis:
    """The Redis client made in the lifespan."""
    redis: Redis = request.app.state.redis
    return redis


async def get_celery(request: Request) -> Celery:
    """The Celery app used to enqueue tasks from the API."""
    celery: Celery = request.app.state.celery
    return celery


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
EngineDep = Annotated[AIOEngine, Depends(get_engine)]
RedisDep = Annotated[Redis, Depends(get_redis)]
CeleryDep = Annotated[Celery, Depends(get_celery)]
