"""Every error is RFC 9457 problem+json with type, title, status and detail."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, Field

from app.core.config import Settings
from app.core.errors import Conflict
from tests.fixtures.app import client_for

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert {"type", "title", "status", "detail"} <= body.keys()
    return body


class Thing(BaseModel):
    name: str = Field(min_length=1, max_length=10)
    count: int


@pytest.fixture
async def echo_client(
    make_settings: Callable[..., Settings],
    app_with: Callable[[Settings], AbstractAsyncContextManager[FastAPI]],
) -> AsyncIterator[httpx.AsyncClient]:
    """An app with a small body cap and a few routes that exercise the error handlers."""
    async with app_with(make_settings(max_body_bytes=2048)) as app:

        @app.post("/echo")
        async def echo(thing: Thing) -> Thing:
            return thing

        @app.get("/boom")
        async def boom() -> None:
            raise RuntimeError("secret internals: mongodb://user:pw@db")

        @app.get("/conflict")
        async def conflict() -> None:
            raise Conflict("That name is taken")

        async with client_for(app) as client:
            yield client


class TestNotFound:
    async def test_unknown_route_is_problem(self, client: httpx.AsyncClient) -> None:
        body = assert_problem(await client.get("/nope"), 404)
        assert body["type"] == "/problems/not-found"

    async def test_wrong_method_is_problem(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.delete("/health"), 405)


class TestValidation:
    async def test_malformed_json(self, echo_client: httpx.AsyncClient) -> None:
        response = await echo_client.post(
            "/echo", content=b'{"name": ', headers={"content-type": "application/json"}
        )
        body = assert_problem(response, 422)
        assert body["type"] == "/problems/malformed-json"

    async def test_invalid_fields_are_listed_without_values(
        self, echo_client: httpx.AsyncClient
    ) -> None:
        response = await echo_client.post("/echo", json={"name": "x" * 50, "count": "many"})
        body = assert_problem(response, 422)
        errors = body["errors"]
        assert isinstance(errors, list)
        assert sorted(e["loc"][-1] for e in errors) == ["count", "name"]
        assert "x" * 50 not in response.text

    async def test_valid_body_passes(self, echo_client: httpx.AsyncClient) -> None:
        response = await echo_client.post("/echo", json={"name": "ok", "count": 1})
        assert response.status_code == 200
        assert response.json() == {"name": "ok", "count": 1}


class TestBodySizeCap:
    async def test_declared_length_over_cap(self, echo_client: httpx.AsyncClient) -> None:
        response = await echo_client.post("/echo", json={"name": "a" * 4000, "count": 1})
        body = assert_problem(response, 413)
        assert "2048" in str(body["detail"])

    async def test_chunked_body_over_cap(self, echo_client: httpx.AsyncClient) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b"x" * 512

        response = await echo_client.post(
            "/echo", content=chunks(), headers={"content-type": "application/json"}
        )
        assert_problem(response, 413)

    async def test_chunked_body_under_cap_is_served(self, echo_client: httpx.AsyncClient) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"name": "ok",'
            yield b' "count": 2}'

        response = await echo_client.post(
            "/echo", content=chunks(), headers={"content-type": "application/json"}
        )
        assert response.status_code == 200
        assert response.json()["count"] == 2


class TestDomainAndUnhandledErrors:
    async def test_domain_error_carries_its_status(self, echo_client: httpx.AsyncClient) -> None:
        body = assert_problem(await echo_client.get("/conflict"), 409)
        assert body["detail"] == "That name is taken"
        assert body["type"] == "/problems/conflict"

    async def test_unhandled_error_leaks_nothing(self, echo_client: httpx.AsyncClient) -> None:
        response = await echo_client.get("/boom")
        assert_problem(response, 500)
        assert "secret" not in response.text
        assert "Traceback" not in response.text
