"""The access matrix for alert rules and alarms: every endpoint x every kind of caller.

The world is the catalog matrix's (tests/catalog/permissions/test_access_matrix.py): Alice
owns folder F with product P and device D; the caller's role is granted on F only. Here the
world also has a rule R on P and an active alarm A of R on D.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.core.services import services_of
from tests.alerts.test_router import THRESHOLD, stored_alarm
from tests.catalog.permissions.test_access_matrix import (
    HIDDEN,
    LISTED,
    ROLES,
    _headers,
    _person,
    _world,
)
from tests.fixtures.alerts import new_rule
from tests.fixtures.identities import MakeUser

SEE = (404, 200, 200, 200, 200, 404, 404, 200)
EDIT = (404, 403, 200, 200, 200, 404, 404, 200)
EDIT_204 = (404, 403, 204, 204, 204, 404, 404, 204)
CREATE = (404, 403, 201, 201, 201, 403, 403, 201)
LIST_RULES = (HIDDEN, LISTED, LISTED, LISTED, LISTED, HIDDEN, HIDDEN, LISTED)
LIST_ALARMS = (HIDDEN, LISTED, LISTED, LISTED, LISTED, HIDDEN, LISTED, LISTED)
ALARM_EDIT = (404, 403, 200, 200, 200, 404, 403, 200)
COUNTS = (404, 200, 200, 200, 200, 404, 404, 200)


def _rule_body(ids: dict[str, str]) -> dict[str, Any]:
    return {
        "name": "r",
        "scope": {"type": "product", "id": ids["P"]},
        "severity": "minor",
        "condition": THRESHOLD,
    }


ENDPOINTS: list[tuple[str, str, str, tuple[Any, ...], Any, str]] = [
    ("create rule", "POST", "/alert-rules", CREATE, _rule_body, ""),
    ("list rules", "GET", "/alert-rules", LIST_RULES, None, "R"),
    ("get rule", "GET", "/alert-rules/{R}", SEE, None, ""),
    ("update rule", "PATCH", "/alert-rules/{R}", EDIT, lambda ids: {"name": "x"}, ""),
    ("delete rule", "DELETE", "/alert-rules/{R}", EDIT_204, None, ""),
    ("list alarms", "GET", "/alarms", LIST_ALARMS, None, "A"),
    ("alarm counts in F", "GET", "/alarms/counts?folder_id={F}", COUNTS, None, ""),
    ("ack alarm", "POST", "/alarms/{A}/ack", ALARM_EDIT, None, ""),
    ("clear alarm", "POST", "/alarms/{A}/clear", ALARM_EDIT, None, ""),
]

CASES = [
    pytest.param(role, method, path, expected, body, listed, id=f"{name} | {role}")
    for name, method, path, expect, body, listed in ENDPOINTS
    for role, expected in zip(ROLES, expect, strict=True)
]


@pytest.mark.parametrize(("role", "method", "path", "expected", "body", "listed"), CASES)
async def test_access_matrix(
    role: str,
    method: str,
    path: str,
    expected: int | str,
    body: Any,
    listed: str,
    app: FastAPI,
    client: httpx.AsyncClient,
    make_user: MakeUser,
    master_headers: dict[str, str],
) -> None:
    alice = await _person("alice", make_user, client)
    bystander = await _person("bystander", make_user, client)
    world = await _world(app, alice, bystander)
    engine = services_of(app).engine
    rule = await new_rule(engine, scope=world.product, condition=THRESHOLD)
    ids = {**world.ids, "R": str(rule.id), "A": await stored_alarm(engine, rule, world.device)}
    headers = await _headers(
        role, world, app=app, make_user=make_user, client=client, master_headers=master_headers
    )
    url = "/api/v1" + path.format(**ids)
    if listed:
        before = format(int(ids[listed], 16) - 1, "024x")
        url += f"?limit=5&cursor={before}"
    resp = await client.request(method, url, json=body(ids) if body else None, headers=headers)
    if isinstance(expected, int):
        assert resp.status_code == expected, resp.text
        if expected >= 400:
            assert resp.headers["content-type"].startswith("application/problem+json")
        return
    assert resp.status_code == 200, resp.text
    found = {item["id"] for item in resp.json()["items"]}
    assert (ids[listed] in found) is (expected == LISTED)
