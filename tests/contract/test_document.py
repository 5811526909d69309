"""/openapi.json is a valid, complete document that clients can generate from."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from openapi_spec_validator import validate

from app.auth.dependencies import CurrentPrincipal
from app.catalog.dependencies import DeviceForEdit
from app.core import openapi
from app.core.config import Settings
from app.core.errors import PROBLEM_JSON
from app.core.routing import API_PREFIX
from app.main import create_app
from tests.contract.conftest import fuzz_document

METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
async def document(app: FastAPI) -> dict[str, Any]:
    """The document the shared app serves."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as http:
        resp = await http.get("/openapi.json")
    assert resp.status_code == 200
    data: dict[str, Any] = resp.json()
    return data


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) of every operation."""
    return [
        (method, path, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


class TestValidDocument:
    async def test_openapi_spec_validator_passes(self, document: dict[str, Any]) -> None:
        validate(document)

    async def test_every_reference_is_defined(self, document: dict[str, Any]) -> None:
        refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(document)))
        assert refs, "the document refers to no schema at all"
        assert refs <= set(document["components"]["schemas"])

    async def test_fastapis_validation_error_shape_is_gone(self, document: dict[str, Any]) -> None:
        text = json.dumps(document)
        assert "HTTPValidationError" not in text
        assert '"ValidationError"' not in text

    async def test_served_document_is_the_fuzzed_one(self, document: dict[str, Any]) -> None:
        # The contract test fuzzes a document built at collection, with the fuzz server's
        # settings; it must be exactly what the API serves.
        assert fuzz_document() == document


class TestOperations:
    async def test_ids_are_unique_and_stable(self, document: dict[str, Any]) -> None:
        ids = [op["operationId"] for _, _, op in operations(document)]
        assert len(ids) == len(set(ids))
        assert {"devices_create", "devices_get", "readings_post", "auth_create_session"} <= set(ids)
        assert all(re.fullmatch(r"[a-z]+(_[a-z0-9]+)+", i) for i in ids), ids

    async def test_each_has_a_tag_and_a_summary(self, document: dict[str, Any]) -> None:
        known = {t["name"] for t in document["tags"]}
        for method, path, op in operations(document):
            assert op.get("tags"), (method, path)
            assert set(op["tags"]) <= known, (method, path)
            assert op.get("summary"), (method, path)

    async def test_ingest_body_has_one_reading_and_a_batch(self, document: dict[str, Any]) -> None:
        op = document["paths"][f"{API_PREFIX}/devices/{{device_id}}/readings"]["post"]
        media = op["requestBody"]["content"]["application/json"]
        assert {ref["$ref"].rsplit("/", 1)[1] for ref in media["schema"]["oneOf"]} == {
            "ReadingIn",
            "ReadingsBatchIn",
        }
        assert set(media["examples"]) == {"one", "batch"}
        batch = document["components"]["schemas"]["ReadingsBatchIn"]["properties"]["readings"]
        assert batch["maxItems"] == 1000  # READINGS_MAX_BATCH of the test settings


class TestProblems:
    async def test_every_error_answer_is_a_problem(self, document: dict[str, Any]) -> None:
        for method, path, op in operations(document):
            for status, response in op["responses"].items():
                if int(status) < 400:
                    continue
                content = response["content"]
                assert list(content) == [PROBLEM_JSON], (method, path, status)
                assert content[PROBLEM_JSON]["schema"] == {"$ref": "#/components/schemas/Problem"}

    async def test_api_routes_document_auth_limits_and_input_errors(
        self, document: dict[str, Any]
    ) -> None:
        for method, path, op in operations(document):
            if not path.startswith(API_PREFIX):
                continue
            statuses = set(op["responses"])
            assert {"401", "429", "503"} <= statuses, (method, path, statuses)
            anonymous = {} in op["security"]
            if not anonymous:
                assert "403" in statuses, (method, path)
            if op.get("parameters") or op.get("requestBody"):
                assert "422" in statuses, (method, path)
            if op.get("requestBody"):
                assert "413" in statuses, (method, path)
            if "{" in path:
                assert "404" in statuses, (method, path)

    async def test_429_documents_retry_after_and_ratelimit_headers(
        self, document: dict[str, Any]
    ) -> None:
        op = document["paths"][f"{API_PREFIX}/devices"]["get"]
        headers = op["responses"]["429"]["headers"]
        assert {"Retry-After", "RateLimit", "RateLimit-Policy", "X-RateLimit-Reset"} <= set(headers)
        success = op["responses"]["200"]["headers"]
        assert "RateLimit" in success
        assert not success["RateLimit"].get("required")  # the master token is exempt

    async def test_examples_name_the_domain_problem_types(self, document: dict[str, Any]) -> None:
        op = document["paths"][f"{API_PREFIX}/devices"]["post"]
        conflicts = op["responses"]["409"]["content"][PROBLEM_JSON]["examples"]
        assert "serial-taken" in conflicts
        assert conflicts["serial-taken"]["value"]["status"] == 409


class TestSecurity:
    async def test_schemes_and_per_operation_lists(self, document: dict[str, Any]) -> None:
        schemes = document["components"]["securitySchemes"]
        assert set(schemes) == {"bearerAuth", "masterToken", "deviceKey"}
        paths = document["paths"]
        ingest = paths[f"{API_PREFIX}/devices/{{device_id}}/readings"]["post"]["security"]
        assert ingest == [{"deviceKey": []}]
        users = paths[f"{API_PREFIX}/users"]["get"]["security"]
        assert users == [{"bearerAuth": []}, {"masterToken": []}]
        session = paths[f"{API_PREFIX}/auth/session"]["post"]["security"]
        assert {} in session


class TestStatefulLinks:
    async def test_create_links_to_get_patch_delete(self, document: dict[str, Any]) -> None:
        for kind in ("folders", "products", "devices"):
            links = document["paths"][f"{API_PREFIX}/{kind}"]["post"]["responses"]["201"]["links"]
            targets = {link["operationId"] for link in links.values()}
            assert {f"{kind}_get", f"{kind}_update", f"{kind}_delete"} <= targets, kind
            for link in links.values():
                assert list(link["parameters"].values()) == ["$response.body#/id"]


class TestNewRoutesAreDocumentedAutomatically:
    """A router added later (alerts, commands) gets its problem answers from its dependencies."""

    async def test_a_new_route_inherits_its_dependencies_errors(self, settings: Settings) -> None:
        new_app = create_app(settings)
        router = APIRouter(prefix=f"{API_PREFIX}/gadgets", tags=["gadgets"])

        @router.post("/{device_id}/poke", status_code=202)
        async def poke_gadget(device: DeviceForEdit, principal: CurrentPrincipal) -> None:
            """Poke a gadget."""

        new_app.include_router(router, dependencies=[Depends(_noop)])
        op = new_app.openapi()["paths"][f"{API_PREFIX}/gadgets/{{device_id}}/poke"]["post"]
        assert op["operationId"] == "gadgets_poke"
        assert {"401", "403", "404", "422", "503"} <= set(op["responses"])
        examples = op["responses"]["404"]["content"][PROBLEM_JSON]["examples"]
        assert "device-not-found" in examples
        assert op["security"] == [{"bearerAuth": []}, {"deviceKey": []}, {"masterToken": []}]


async def _noop() -> None:
    return None


class TestDocsPages:
    async def test_docs_and_redoc_render(self, client: httpx.AsyncClient) -> None:
        for page, marker in (("/docs", "swagger-ui"), ("/redoc", "redoc")):
            resp = await client.get(page)
            assert resp.status_code == 200, page
            assert marker in resp.text.lower()
            assert "/openapi.json" in resp.text

    def test_problem_schema_is_rfc_9457_with_extensions(self) -> None:
        schema = openapi.Problem.model_json_schema()
        assert {"type", "title", "status", "detail"} <= set(schema["required"])
        assert {"instance", "errors", "retry_after", "policy"} <= set(schema["properties"])
        assert schema.get("additionalProperties", True) is True
