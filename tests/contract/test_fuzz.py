"""The API keeps its OpenAPI contract: schemathesis fuzzes every operation of /openapi.json.

Run as a pytest plugin against a real server (tests/contract/conftest.py) as a user, an admin
and a device key, positive and negative data, seeded and bounded (`make fuzz` runs more):

- no server errors; every status, content type and body is the documented one;
- what the schema allows is accepted (or refused for a reason it cannot say: 401, 403, 404,
  409); what it forbids is refused.

Positive cases aim their path ids at what the caller owns, so they reach the handlers.
A few 422s depend on things no schema can say, and only those are not counted as "valid data
refused": a range whose start is after its end, a cursor the server never issued, a reading
time too far from the server's clock (`CONTEXT_DEPENDENT`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.contract.conftest import FuzzWorld, fuzz_document
from tests.fixtures.fuzz_figures import FIGURES, FUZZ_EXAMPLES, FUZZ_SCENARIOS, FUZZ_SEED

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    positive_data_acceptance,
    negative_data_rejection,
]
# Problem types of 422s that no schema can foresee (cross-field rules, server-issued tokens,
# the server's clock).
CONTEXT_DEPENDENT = frozenset(
    {
        "/problems/readings-query-invalid",
        "/problems/readings-invalid",
        "/problems/idempotency-key-reused",
    }
)
# Pydantic error types of rules between fields or items (min <= max, unique metric names).
CROSS_FIELD = frozenset(
    {
        "metric_range_order",
        "metric_range_type",
        "metric_names_unique",
        "command_names_unique",
        "alert_condition_fields",
        "alert_notify_fields",
    }
)


def _headers(case: Any, world: FuzzWorld) -> dict[str, str]:
    """The principal a case is sent as: the device for device-only routes, the admin for
    user management, the user for the rest."""
    security = case.operation.definition.raw.get("security", [])
    schemes = {name for requirement in security for name in requirement}
    if schemes == {"deviceKey"}:
        return world.device
    if case.operation.path.startswith("/api/v1/users"):
        return world.admin
    return world.user


def _aim(case: Any, world: FuzzWorld) -> None:
    """Point a positive case's ids at resources its caller may act on."""
    if case.meta is None or case.meta.generation.mode is not GenerationMode.POSITIVE:
        return
    params = case.path_parameters or {}
    security = case.operation.definition.raw.get("security", [])
    device_only = {name for requirement in security for name in requirement} == {"deviceKey"}
    for name in params:
        if name == "device_id" and device_only:
            params[name] = world.device_id
        elif name == "resource_id":
            kind = case.operation.path.split("/")[3]
            params[name] = world.user_ids[f"{kind[:-1]}_id"]
        elif name in world.user_ids:
            params[name] = world.user_ids[name]
        elif name == "uid":
            params[name] = world.victim_uid
    _aim_body(case, world)


def _aim_body(case: Any, world: FuzzWorld) -> None:
    """Point the ids a body refers to at the user's folder and product, so creations succeed."""
    if not isinstance(case.body, dict):
        return
    for key, target in (("folder_id", "folder_id"), ("parent_id", "folder_id")):
        if isinstance(case.body.get(key), str):
            case.body[key] = world.user_ids[target]
    if isinstance(case.body.get("product_id"), str):
        case.body["product_id"] = world.user_ids["product_id"]


def _beyond_schema(problem: dict[str, Any]) -> bool:
    """A 422 for a reason no JSON Schema can state (see the module docstring)."""
    if problem.get("type") in CONTEXT_DEPENDENT:
        return True
    errors = problem.get("errors") or []
    return bool(errors) and all(e.get("type") in CROSS_FIELD for e in errors)


@pytest.fixture(scope="module")
def fuzz_schema() -> Any:
    """The document, from the same factory and settings as the fuzz server's
    (`test_document.py` checks the served one is identical)."""
    loaded = schemathesis.openapi.from_dict(fuzz_document())
    loaded.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=FUZZ_EXAMPLES,
        # Credentials come from the principals, not from the generator.
        with_security_parameters=False,
    )
    loaded.config.seed = FUZZ_SEED
    return loaded


@pytest.fixture(scope="module")
def fuzz_http() -> Iterator[requests.Session]:
    """One keep-alive HTTP session for every case (a new connection per case cost a tenth of
    the fuzzing time, on both ends)."""
    with requests.Session() as session:
        yield session


# Loaded from a fixture, the operations' cases are generated when the test runs, in the one
# worker that runs it, rather than at collection in every worker (~5 s of CPU each). Each
# operation is reported as a subtest.
schema = schemathesis.pytest.from_fixture("fuzz_schema")


# One test item runs every operation: a time limit for the ~4,000 coverage cases any run
# makes, plus some for each example per operation and mode.
@pytest.mark.timeout(240 + 30 * FUZZ_EXAMPLES)
@schema.parametrize()
@hypothesis.settings(
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    database=None,
    derandomize=True,
)
def test_api_keeps_its_contract(
    case: Any, fuzz_world: FuzzWorld, fuzz_http: requests.Session
) -> None:
    """Every generated request gets a documented answer, accepted or refused as the schema says."""
    _aim(case, fuzz_world)
    response = case.call(
        base_url=fuzz_world.base_url, session=fuzz_http, headers=_headers(case, fuzz_world)
    )
    _validate(case, response)


def _validate(case: Any, response: Any) -> None:
    """Run the checks on one answer and count it."""
    FIGURES["cases"][case.operation.label] += 1
    FIGURES["statuses"][str(response.status_code)] += 1
    checks = CHECKS
    if response.status_code == 422 and _beyond_schema(response.json()):
        checks = [c for c in CHECKS if c is not positive_data_acceptance]
    try:
        case.validate_response(response, checks=checks)
    except BaseException as exc:  # schemathesis raises a (Base)ExceptionGroup of failures
        FIGURES["failed cases"][case.operation.label] += 1
        for failure in getattr(exc, "exceptions", [exc]):
            FIGURES["failures by check"][type(failure).__name__] += 1
        raise


def test_create_get_patch_delete_chains(fuzz_world: FuzzWorld, fuzz_http: requests.Session) -> None:
    """Stateful: the fuzzer follows the document's links (create -> get/patch/delete)."""
    chains = schemathesis.openapi.from_dict(fuzz_document())
    # Positive steps only: a chain is worth following when each step can succeed.
    chains.config.generation.update(modes=[GenerationMode.POSITIVE], with_security_parameters=False)
    chains.config.seed = FUZZ_SEED
    machine: Any = chains.as_state_machine()

    class Chains(machine):  # type: ignore[misc, valid-type]
        def before_call(self, case: Any) -> None:
            _aim_body(case, fuzz_world)

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {
                "base_url": fuzz_world.base_url,
                "session": fuzz_http,
                "headers": _headers(case, fuzz_world),
            }

        def validate_response(self, response: Any, case: Any, *_: Any, **__: Any) -> None:
            _validate(case, response)

    Chains.run(
        settings=hypothesis.settings(
            max_examples=FUZZ_SCENARIOS,
            stateful_step_count=6,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
    )
