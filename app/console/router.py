"""Serves the console built by `make console` (into `static/`) at `/console`, same origin.

Files under `/console/assets/` are the hashed bundle; any other path under `/console` answers
the app's `index.html`, which routes in the browser. `/console/config.json` is the Firebase
web config from settings, with the Auth emulator's URL in development and test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response

STATIC_DIR = Path(__file__).resolve().parent / "static"

router = APIRouter(prefix="/console", include_in_schema=False)


def config_of(request: Request) -> dict[str, Any]:
    """The configuration the console starts with (public values only)."""
    settings = request.app.settings
    emulator = settings.firebase_auth_emulator_host if settings.is_dev_or_test else None
    project = settings.firebase_project_id
    return {
        "firebase": {
            "apiKey": settings.console_firebase_api_key,
            "authDomain": settings.console_firebase_auth_domain or f"{project}.firebaseapp.com",
            "projectId": project,
        },
        "auth_emulator_url": f"http://{emulator}" if emulator else None,
    }


@router.get("/config.json")
async def console_config(request: Request) -> JSONResponse:
    """The console's Firebase configuration."""
    return JSONResponse(config_of(request), headers={"Cache-Control": "no-store"})


@router.get("")
@router.get("/{path:path}")
async def console_file(path: str = "") -> Response:
    """A built asset, or the app's page for any other console path."""
    root = STATIC_DIR.resolve()
    if path.startswith("assets/"):
        target = (root / path).resolve()
        if target.is_file() and target.is_relative_to(root):
            immutable = {"Cache-Control": "public, max-age=31536000, immutable"}
            return FileResponse(target, headers=immutable)
        return PlainTextResponse("not found", status_code=404)
    index = root / "index.html"
    if not index.is_file():
        return PlainTextResponse("The console is not built: run `make console`.", status_code=503)
    return FileResponse(index, headers={"Cache-Control": "no-cache"})
