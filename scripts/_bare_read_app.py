"""The baseline of bench_read.py: a bare FastAPI endpoint returning a device's latest values.

No authentication, no rate limiting: one `find_one` of the `device_latest` document, shaped
as the API shapes it. Reads MONGODB_URL and MONGODB_DB from the environment (a benchmark
helper, not part of the app).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from scripts._bare_app import bare_app


def create_bare_read_app() -> FastAPI:
    """An app with one GET endpoint reading the device's latest-values document."""
    app, latest = bare_app("device_latest")

    @app.get("/api/v1/devices/{device_id}/readings/latest")
    async def get_latest(device_id: str) -> dict[str, Any]:
        doc = await latest.find_one({"_id": device_id}) or {}
        metrics = {
            key: {"ts": entry["ts"], "value": entry["v"], "suspect": bool(entry.get("suspect"))}
            for key, entry in (doc.get("m") or {}).items()
        }
        newest = max((m["ts"] for m in metrics.values()), default=None)
        return {"device_id": device_id, "ts": newest, "metrics": metrics}

    return app
