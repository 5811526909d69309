"""Browser tests: the console in Debian's Chromium (driven by Playwright for Python) against
the real stack, with the API in a uvicorn process of its own serving the built console."""

from __future__ import annotations

import os
import shutil
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from app.console.router import STATIC_DIR
from app.core.config import Settings
from tests.fixtures.servers import ROOT, ManagedProcess, free_port

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARTIFACTS = ROOT / ".artifacts"


@pytest.fixture(scope="session")
def console_api(settings: Settings, workdir: Path) -> Iterator[str]:
    """The API (serving /console) in its own process on the test run's servers; its URL."""
    if not (STATIC_DIR / "index.html").is_file():
        pytest.fail("the console is not built: run `make console` (make test builds it)")
    port = free_port()
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "MIGRATIONS_AUTO_APPLY": "true",
        "MONGODB_URL": settings.mongodb_url,
        "MONGODB_DB": settings.mongodb_db,
        "REDIS_URL": settings.redis_url,
        "FIREBASE_PROJECT_ID": settings.firebase_project_id,
        "FIREBASE_AUTH_EMULATOR_HOST": settings.firebase_auth_emulator_host or "",
        "JWT_SECRET": settings.jwt_secret.get_secret_value() if settings.jwt_secret else "",
        "LOG_LEVEL": "WARNING",
    }
    argv = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    proc = ManagedProcess("api-console", argv, port=port, cwd=ROOT, env=env, log_dir=workdir)

    def ready() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as resp:
            return bool(resp.status == 200)

    proc.start(timeout=90, ready=ready)
    yield f"http://127.0.0.1:{port}"
    proc.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless (fails, never skips, when it is missing)."""
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.fail(f"Chromium not found at {CHROMIUM}: `make system-deps` installs it")
    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            await chromium.close()
