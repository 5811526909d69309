"""The commands routes document every answer they can give, problems as problem+json."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.core.errors import PROBLEM_JSON

BASE = "/api/v1/devices/{device_id}/commands"
EXPECTED = {
    ("post", BASE): {"201", "401", "403", "404", "409", "422", "429"},
    ("get", BASE): {"200", "401", "404", "422", "429"},
    ("get", f"{BASE}/next"): {"200", "204", "401", "403", "404", "422", "429", "503"},
    ("get", f"{BASE}/{{command_id}}"): {"200", "401", "404", "422", "429"},
    ("post", f"{BASE}/{{command_id}}/cancel"): {"200", "401", "403", "404", "409", "422", "429"},
    ("post", f"{BASE}/{{command_id}}/result"): {"200", "401", "403", "404", "409", "422", "429"},
}


@pytest.fixture
async def spec(client: httpx.AsyncClient) -> dict[str, Any]:
    """The served OpenAPI document."""
    doc: dict[str, Any] = (await client.get("/openapi.json")).json()
    return doc


class TestOpenApi:
    @pytest.mark.parametrize(("method", "path"), list(EXPECTED), ids=lambda v: str(v))
    async def test_every_answer_documented(
        self, method: str, path: str, spec: dict[str, Any]
    ) -> None:
        responses = spec["paths"][path][method]["responses"]
        # Every answer the commands code can give is documented (the contract adds the rest
        # its dependencies can give, e.g. 400 for a body that is not UTF-8, 503).
        assert EXPECTED[(method, path)] <= set(responses)
        for code, response in responses.items():
            if int(code) >= 400:
                assert list(response["content"]) == [PROBLEM_JSON], code
        assert "content" not in responses.get("204", {})

    async def test_the_document_is_valid_openapi(self, spec: dict[str, Any]) -> None:
        from openapi_spec_validator import validate

        validate(spec)
