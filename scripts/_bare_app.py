"""The baseline of bench_ingest.py: a bare FastAPI endpoint doing one `insert_one` per request.

No authentication, no rate limiting, no validation beyond JSON: what "the speed of the store
itself" looks like through HTTP. Reads MONGODB_URL and MONGODB_DB from the environment (a
benchmark helper, not part of the app).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorCollection


def bare_app(collection: str) -> tuple[FastAPI, AsyncIOMotorCollection[dict[str, Any]]]:
    """A FastAPI app with `/health` only, and `collection` of MONGODB_DB through a client
    that the app's lifespan closes (the frame both baselines share)."""
    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(
        os.environ["MONGODB_URL"], tz_aware=True
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        client.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app, client[os.environ["MONGODB_DB"]][collection]


def create_bare_app() -> FastAPI:
    """An app with one POST endpoint writing the reading as it comes."""
    app, readings = bare_app("readings")

    @app.post("/devices/{device_id}/readings", status_code=202)
    async def post(device_id: str, body: dict[str, Any]) -> dict[str, int]:
        await readings.insert_one(
            {
                "ts": datetime.now(UTC),
                "meta": {"device_id": device_id, "product_id": "bare"},
                "m": body.get("metrics", {}),
            }
        )
        return {"accepted": 1, "rejected": 0}

    return app
