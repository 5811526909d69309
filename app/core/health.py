"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app import __version__
from app.core import db, redis
from app.core.errors import ServiceUnavailable, error_response
from app.core.openapi import raises
from app.core.services import ServicesDep

logger = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])


class HealthRead(BaseModel):
    """The process is up, running this version."""

    status: Literal["ok"]
    version: str


class ReadyRead(BaseModel):
    """MongoDB and Redis answered."""

    status: Literal["ready"]
    checks: dict[str, str]


@router.get("/health", summary="Liveness: the process is up", response_model=HealthRead)
async def health() -> dict[str, str]:
    """Answer while the process can serve requests at all, with the running version."""
    return {"status": "ok", "version": __version__}


async def _check(name: str, probe: Awaitable[Any], timeout: float) -> tuple[str, str]:
    try:
        await asyncio.wait_for(probe, timeout)
    except Exception as exc:  # any failure means "not ready"; the reason goes to the log
        logger.warning(
            "readiness check failed", extra={"dependency": name, "error": type(exc).__name__}
        )
        return name, "unavailable"
    return name, "ok"


@router.get(
    "/ready",
    summary="Readiness: MongoDB and Redis answer, the live feed is subscribed",
    responses={
        200: {"model": ReadyRead},
        503: {"description": "A dependency did not answer in time"},
    },
    response_class=JSONResponse,
)
@raises(ServiceUnavailable)
async def ready(request: Request, services: ServicesDep) -> JSONResponse:
    """Ping MongoDB and Redis concurrently, each within the readiness timeout."""
    timeout = services.settings.ready_timeout_s
    results = dict(
        await asyncio.gather(
            _check("mongodb", db.ping(services.mongo_client), timeout),
            _check("redis", redis.ping(services.redis), timeout),
        )
    )
    # The live streams' Redis subscription (its own connection, followed in the background).
    results["live"] = "ok" if services.live.connected else "unavailable"
    failed = sorted(name for name, status in results.items() if status != "ok")
    if failed:
        error = ServiceUnavailable(
            f"Not ready: {', '.join(failed)} unavailable",
            headers={"Retry-After": "5"},
            extra={"checks": results},
        )
        return error_response(error, instance=request.url.path)
    return JSONResponse({"status": "ready", "checks": results})
