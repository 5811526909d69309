"""The fuzzed server and the people and devices it is fuzzed as.

A real uvicorn server (its own app, the run's real MongoDB, Redis and Firebase emulator) with
limits high enough that the fuzzer is never throttled, and three principals: a user who owns a
folder, a product and a device; an admin; and a device key. `FUZZ_EXAMPLES` (environment, set
by `make fuzz`) raises the number of examples per operation.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from firebase_admin import auth

from app.core.config import Settings
from app.core.services import services_of
from app.main import create_app
from tests.fixtures.catalog import unique
from tests.fixtures.identities import (
    PASSWORD,
    TEST_JWT_SECRET,
    TEST_MASTER_TOKEN,
    EmulatorRest,
    bearer,
    unique_email,
)
from tests.fixtures.servers import free_port, port_open, wait_until

API = "/api/v1"
_UNLIMITED = 1_000_000_000
# The fuzzer is never throttled, and counts under its own limiter keys.
FUZZ_SETTINGS: dict[str, Any] = {
    "rate_limit_key_prefix": "fuzz",
    "rate_limit_product_create_limit": _UNLIMITED,
    "rate_limit_user_limit": _UNLIMITED,
    "rate_limit_admin_limit": _UNLIMITED,
    "rate_limit_device_limit": _UNLIMITED,
    "rate_limit_anonymous_limit": _UNLIMITED,
    "rate_limit_auth_failures_limit": _UNLIMITED,
    "rate_limit_invites_limit": _UNLIMITED,
}


def fuzz_document() -> dict[str, Any]:
    """The document the fuzz server serves, built without starting it (for collection)."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        environment="test",
        jwt_secret=TEST_JWT_SECRET,
        master_token=TEST_MASTER_TOKEN,
        **FUZZ_SETTINGS,
    )
    return create_app(settings).openapi()


@dataclass
class FuzzWorld:
    """Who calls the fuzzed server, and the ids of what they own."""

    base_url: str
    user: dict[str, str]
    admin: dict[str, str]
    device: dict[str, str]
    # Path parameter -> an id the user may act on (positive cases aim here).
    user_ids: dict[str, str] = field(default_factory=dict)
    device_id: str = ""
    victim_uid: str = ""


@pytest.fixture(scope="session")
def fuzz_server(make_settings: Callable[..., Settings]) -> Iterator[str]:
    """A uvicorn server for the fuzzer: every quota out of reach, its own limiter keys."""
    settings = make_settings(**FUZZ_SETTINGS)
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_config=None, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    wait_until(lambda: server.started and port_open(port), timeout=60, what="fuzz server")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


async def _person(emulator: EmulatorRest, app: FastAPI, *, admin: bool) -> tuple[str, str]:
    """A new emulator account (admin by custom claim when asked): uid and a fresh ID token."""
    email = unique_email()
    data = await emulator.sign_up(email=email, password=PASSWORD, display_name=None)
    if admin:
        firebase_app = services_of(app).firebase.app
        await asyncio.to_thread(
            auth.set_custom_user_claims, data["localId"], {"admin": True}, app=firebase_app
        )
        data = await emulator.sign_in(email=email, password=PASSWORD)
    return data["localId"], data["idToken"]


def _created(http: httpx.Client, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    resp = http.post(API + path, json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    return resp.json()


@pytest.fixture(scope="session")
async def fuzz_world(
    fuzz_server: str, app: FastAPI, emulator_rest: EmulatorRest, master_headers: dict[str, str]
) -> FuzzWorld:
    """The principals, their first requests made, and what the user owns."""
    _, user_token = await _person(emulator_rest, app, admin=False)
    _, admin_token = await _person(emulator_rest, app, admin=True)
    victim_uid, victim_token = await _person(emulator_rest, app, admin=False)
    user, admin = bearer(user_token), bearer(admin_token)
    with httpx.Client(base_url=fuzz_server, timeout=30) as http:
        for headers in (user, admin, bearer(victim_token)):
            assert http.get(f"{API}/auth/me", headers=headers).status_code == 200
        folder = _created(http, "/folders", {"name": unique("fuzz")}, user)
        product = _created(
            http,
            "/products",
            {"name": "fuzzed", "sku": unique("sku"), "folder_id": folder["id"]},
            user,
        )
        device = _created(
            http,
            "/devices",
            {"name": "fuzzed", "serial": unique("sn"), "product_id": product["id"]},
            user,
        )
        # The device principal's own device belongs to the operator, out of the user's reach.
        own_product = _created(
            http, "/products", {"name": "p", "sku": unique("sku")}, master_headers
        )
        own = _created(
            http,
            "/devices",
            {"name": "sensor", "serial": unique("sn"), "product_id": own_product["id"]},
            master_headers,
        )
    return FuzzWorld(
        base_url=fuzz_server,
        user=user,
        admin=admin,
        device={"X-Device-Key": own["key"]},
        user_ids={
            "folder_id": folder["id"],
            "product_id": product["id"],
            "device_id": device["id"],
        },
        device_id=own["id"],
        victim_uid=victim_uid,
    )
