"""`scripts/make_admin.py --email` makes a Firebase account an admin."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import httpx

from app.core.config import Settings
from tests.fixtures.identities import MakeUser, bearer, unique_email
from tests.fixtures.servers import ROOT

SCRIPT = ROOT / "scripts" / "make_admin.py"


async def run_script(settings: Settings, *args: str) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "MONGODB_URL": settings.mongodb_url,
        "MONGODB_DB": settings.mongodb_db,
        "REDIS_URL": settings.redis_url,
        "FIREBASE_PROJECT_ID": settings.firebase_project_id,
        "FIREBASE_AUTH_EMULATOR_HOST": settings.firebase_auth_emulator_host or "",
        "LOG_JSON": "false",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        *args,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


class TestMakeAdmin:
    async def test_signed_in_user_becomes_admin_at_once(
        self, client: httpx.AsyncClient, make_user: MakeUser, settings: Settings
    ) -> None:
        user = await make_user(email_verified=True)
        assert (await client.get("/api/v1/auth/me", headers=user.headers)).status_code == 200
        assert (await client.get("/api/v1/users", headers=user.headers)).status_code == 403
        code, out, err = await run_script(settings, "--email", user.email.upper())
        assert code == 0, err
        assert user.uid in out
        assert (await client.get("/api/v1/users", headers=user.headers)).status_code == 200

    async def test_not_yet_signed_in_user_gets_the_claim(
        self, client: httpx.AsyncClient, make_user: MakeUser, settings: Settings, emulator_rest: Any
    ) -> None:
        user = await make_user(email_verified=True)
        code, _, err = await run_script(settings, "--email", user.email)
        assert code == 0, err
        fresh = await emulator_rest.sign_in(email=user.email, password=user.password)
        resp = await client.get("/api/v1/users", headers=bearer(fresh["idToken"]))
        assert resp.status_code == 200

    async def test_unknown_email_fails(self, settings: Settings) -> None:
        code, _, err = await run_script(settings, "--email", unique_email())
        assert code == 1
        assert "no Firebase account" in err
