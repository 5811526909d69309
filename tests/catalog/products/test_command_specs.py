"""Products declare commands: a valid, bounded, self-contained JSON Schema per command."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.catalog.command_specs import MAX_COMMANDS, MAX_SCHEMA_BYTES, CommandSpec
from app.core.errors import PROBLEM_JSON
from app.core.services import services_of
from tests.fixtures.catalog import new_product, unique
from tests.fixtures.catalog_http import API, principal_of, signed_in
from tests.fixtures.identities import MakeUser

VALID = {
    "name": "open_valve",
    "description": "Open the valve for a while",
    "params": {
        "type": "object",
        "properties": {"seconds": {"type": "integer", "minimum": 1}},
        "required": ["seconds"],
    },
    "ttl_s": 120,
    "result_expected": True,
}

BAD: list[tuple[str, list[dict[str, Any]]]] = [
    ("not a schema", [{"name": "a", "params": {"type": "object", "properties": {"x": 5}}}]),
    ("unknown type", [{"name": "a", "params": {"type": "object", "minProperties": "two"}}]),
    ("params not an object schema", [{"name": "a", "params": {"type": "string"}}]),
    ("remote ref", [{"name": "a", "params": {"$ref": "https://example.com/s.json"}}]),
    (
        "schema too large",
        [{"name": "a", "params": {"type": "object", "description": "x" * MAX_SCHEMA_BYTES}}],
    ),
    (
        "regex",
        [{"name": "a", "params": {"type": "object", "properties": {"s": {"pattern": "(a+)+$"}}}}],
    ),
    ("regex keys", [{"name": "a", "params": {"patternProperties": {"^x": {}}}}]),
    ("bad name", [{"name": "1a"}]),
    ("duplicate names", [{"name": "a"}, {"name": "a"}]),
    ("too many", [{"name": f"c{i}"} for i in range(MAX_COMMANDS + 1)]),
    ("ttl zero", [{"name": "a", "ttl_s": 0}]),
    ("unknown field", [{"name": "a", "retries": 3}]),
]


def _deep(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"x": schema}}
    return schema


class TestDeclare:
    async def test_property_names_are_not_keywords(
        self, app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        alice = await signed_in(make_user, client)
        product = await new_product(services_of(app).engine, owner=principal_of(alice))
        schema = {
            "type": "object",
            "properties": {"pattern": {"type": "string"}, "$ref": {"type": "integer"}},
            "$defs": {"format": {"enum": [{"pattern": "x"}]}},
        }
        body = {"commands": [{"name": "a", "params": schema}]}
        resp = await client.patch(f"{API}/products/{product.id}", json=body, headers=alice.headers)
        assert resp.status_code == 200, resp.text
        # `$` keys are kept as JSON text in MongoDB (refused inside update values) and come back.
        got = await client.get(f"{API}/products/{product.id}", headers=alice.headers)
        assert got.json()["commands"][0]["params"] == schema

    async def test_create_round_trips(self, client: httpx.AsyncClient, make_user: MakeUser) -> None:
        alice = await signed_in(make_user, client)
        body = {"name": unique("p"), "sku": unique("SKU"), "commands": [VALID, {"name": "b"}]}
        resp = await client.post(f"{API}/products", json=body, headers=alice.headers)
        assert resp.status_code == 201, resp.text
        commands = resp.json()["commands"]
        assert commands[0] == VALID
        assert commands[1] == {
            "name": "b",
            "description": None,
            "params": {"type": "object"},
            "ttl_s": 3600,
            "result_expected": False,
        }

    @pytest.mark.parametrize(("case", "commands"), BAD, ids=[c for c, _ in BAD])
    async def test_bad_declaration_422_and_unchanged(
        self,
        case: str,
        commands: list[dict[str, Any]],
        app: FastAPI,
        client: httpx.AsyncClient,
        make_user: MakeUser,
    ) -> None:
        alice = await signed_in(make_user, client)
        product = await new_product(
            services_of(app).engine,
            owner=principal_of(alice),
            commands=[CommandSpec.model_validate(VALID).stored()],
        )
        url = f"{API}/products/{product.id}"
        resp = await client.patch(url, json={"commands": commands}, headers=alice.headers)
        assert resp.status_code == 422, resp.text
        assert resp.headers["content-type"].startswith(PROBLEM_JSON)
        assert (await client.get(url, headers=alice.headers)).json()["commands"] == [VALID]

    async def test_too_deep_schema_422(
        self, app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        alice = await signed_in(make_user, client)
        product = await new_product(services_of(app).engine, owner=principal_of(alice))
        body = {"commands": [{"name": "a", "params": _deep(40)}]}
        resp = await client.patch(f"{API}/products/{product.id}", json=body, headers=alice.headers)
        assert resp.status_code == 422

    async def test_commands_null_refused(
        self, app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        alice = await signed_in(make_user, client)
        product = await new_product(services_of(app).engine, owner=principal_of(alice))
        resp = await client.patch(
            f"{API}/products/{product.id}", json={"commands": None}, headers=alice.headers
        )
        assert resp.status_code == 422
