"""The OpenAPI document, completed from what the code already knows.

FastAPI documents parameters, bodies and success answers. What it cannot see is declared once,
next to the code it describes, and gathered here for every route:

- **Problem answers.** A dependency or endpoint names the `AppError` classes it raises
  (`@raises(DeviceNotFound)`); a route documents the union over its whole dependency tree, plus
  422 when it takes any input and 413 when it takes a body. Status, `type` and title come from
  the classes themselves, so a new router that uses the usual dependencies is documented
  without writing a response by hand.
- **Security.** A principal dependency names the schemes it accepts (`@accepts(...)`); a route
  accepts what every one of its dependencies accepts.
- **Bodies read by the endpoint itself** (`@raw_body(ReadingIn, ReadingsBatchIn)`), with examples.
- **Bounds from settings:** `json_schema_extra={"x-settings": {"maximum": "page_size_max"}}`
  becomes `maximum: <Settings.page_size_max>` in this app's document.
- Stable operation ids (`devices_create`), summaries from docstrings, and links from each
  `POST /things` to `GET|PATCH|DELETE /things/{thing_id}` for stateful fuzzing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, TypeVar, cast

from fastapi import routing
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from app.core.errors import (
    PROBLEM_BASE,
    PROBLEM_JSON,
    AppError,
    BadRequest,
    PayloadTooLarge,
    Unprocessable,
)

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from app.core.config import Settings

F = TypeVar("F", bound=Callable[..., Any])

ERRORS_ATTR = "__openapi_errors__"
SECURITY_ATTR = "__openapi_security__"
BODY_ATTR = "__openapi_body__"
REF = "#/components/schemas/{model}"

# Security scheme names; `ANONYMOUS` is the empty requirement (no credentials needed).
BEARER = "bearerAuth"
MASTER = "masterToken"
DEVICE_KEY = "deviceKey"
ANONYMOUS = ""
EVERY_SCHEME = frozenset({BEARER, MASTER, DEVICE_KEY})

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    BEARER: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A Firebase ID token, or the API's access token from `POST /auth/session`.",
    },
    MASTER: {
        "type": "http",
        "scheme": "bearer",
        "description": "The operator's `MASTER_TOKEN` (operations only; disabled when unset).",
    },
    DEVICE_KEY: {
        "type": "apiKey",
        "in": "header",
        "name": "X-Device-Key",
        "description": "A device's own key (`dk_...`); also accepted as `Authorization: Bearer`.",
    },
}

# Schemas that request schemas refer to by hand (`WithJsonSchema`), added to every document.
SCHEMAS: dict[str, dict[str, Any]] = {}

# The domains, in the order /docs shows them; routers tag their routes with these names.
TAGS: list[dict[str, Any]] = [
    {"name": name, "description": description}
    for name, description in (
        ("auth", "Sign in with Firebase; the API's session tokens; who am I."),
        ("users", "Admins list, disable and promote users."),
        ("folders", "A tree of folders; roles inherit down the tree."),
        ("products", "Device types and their telemetry schema."),
        ("devices", "Device instances, their keys and derived status."),
        ("readings", "Devices post readings; users read history and values."),
        ("permissions", "Share folders, products and devices (owners)."),
        ("commands", "Users send devices commands; devices poll and answer."),
        ("alerts", "Alert rules on readings and presence; alarms, ack, clear."),
        ("live", "Readings as they are stored: Server-Sent Events (and WS)."),
        ("stats", "Fleet statistics over what you can see."),
        ("operations", "Liveness, readiness and metrics."),
    )
]

# Headers documented on every answer of a status.
_RATE_LIMIT_HEADERS: dict[str, dict[str, Any]] = {
    "Retry-After": {
        "description": "Seconds until a request would be admitted.",
        "schema": {"type": "integer", "minimum": 0},
        "required": True,
    },
    "RateLimit-Policy": {
        "description": 'The policies applied (IETF draft), e.g. `"user";q=100;w=60`.',
        "schema": {"type": "string"},
    },
    "RateLimit": {
        "description": 'What is left of each policy (IETF draft), e.g. `"user";r=0;t=17`.',
        "schema": {"type": "string"},
    },
    "X-RateLimit-Limit": {"schema": {"type": "integer"}, "description": "Tightest limit."},
    "X-RateLimit-Remaining": {"schema": {"type": "integer"}, "description": "Requests left."},
    "X-RateLimit-Reset": {
        "schema": {"type": "integer"},
        "description": "Seconds until the tightest quota resets.",
    },
}
STATUS_HEADERS: dict[int, dict[str, dict[str, Any]]] = {
    401: {
        "WWW-Authenticate": {
            "description": "Always `Bearer`.",
            "schema": {"type": "string"},
            "required": True,
        }
    },
    429: _RATE_LIMIT_HEADERS,
    503: {
        "Retry-After": {
            "description": "Seconds after which a retry may succeed, when known.",
            "schema": {"type": "integer", "minimum": 0},
        }
    },
}


class ProblemIssue(BaseModel):
    """One field a request got wrong (`errors` of a 422 problem)."""

    model_config = ConfigDict(extra="allow")

    loc: list[str | int] = Field(description="where: `body`, `query`, `path`, then field names")
    msg: str
    type: str
    index: int | None = Field(default=None, description="the reading's index in a batch")


class Problem(BaseModel):
    """An error answer (RFC 9457), always `application/problem+json`."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": f"{PROBLEM_BASE}device-not-found",
                    "title": "Device not found",
                    "status": 404,
                    "detail": "Device not found",
                    "instance": "/api/v1/devices/65f1c0ffee0000000000beef",
                }
            ]
        },
    )

    type: str = Field(description=f"a URI reference naming the problem, `{PROBLEM_BASE}<name>`")
    title: str = Field(description="short, the same for every problem of this type")
    status: int = Field(ge=400, le=599, description="the HTTP status")
    detail: str = Field(description="what happened this time, for a person")
    instance: str = Field(default="", description="the path of the request")
    errors: list[ProblemIssue] = Field(
        default_factory=list, description="validation failures (422), one per field"
    )
    policy: str = Field(default="", description="the rate-limit policy used up (429)")
    retry_after: int = Field(default=0, ge=0, description="seconds to wait (429)")
    limit: str = Field(default="", description="the setting a query went over (422)")
    checks: dict[str, str] = Field(
        default_factory=dict, description="each dependency's state (`/ready`, 503)"
    )


def raises(*errors: type[AppError]) -> Callable[[F], F]:
    """Declare the `AppError` classes a dependency or endpoint may raise (documented per route)."""

    def mark(target: F) -> F:
        declared = getattr(target, ERRORS_ATTR, ())
        setattr(target, ERRORS_ATTR, (*declared, *errors))
        return target

    return mark


def accepts(*schemes: str) -> Callable[[F], F]:
    """Declare the security schemes a dependency lets through (`ANONYMOUS`: no credentials)."""

    def mark(target: F) -> F:
        setattr(target, SECURITY_ATTR, frozenset(schemes))
        return target

    return mark


def raw_body(
    *models: type[BaseModel], examples: Mapping[str, Any] | None = None
) -> Callable[[F], F]:
    """Document a JSON body the endpoint reads itself: one of `models`, with named examples."""

    def mark(target: F) -> F:
        setattr(target, BODY_ATTR, (models, dict(examples or {})))
        return target

    return mark


def operation_id(route: APIRoute) -> str:
    """`<tag>_<name>` with the tag's words dropped from the name: `devices_create`."""
    tag = str(route.tags[0]) if route.tags else "api"
    words = set(tag.replace("-", "_").split("_"))
    words |= {w[:-1] for w in words if w.endswith("s")}
    kept = [w for w in route.name.split("_") if w not in words]
    return "_".join([tag.replace("-", "_"), *(kept or [route.name])])


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _dependants(sub)


def _marks(route: APIRoute, attr: str) -> Iterator[Any]:
    for dependant in _dependants(route.dependant):
        call = dependant.call
        if call is None:
            continue
        # A class instance (`RateLimit("x")`) finds its class's mark too.
        found = getattr(call, attr, None)
        if found is not None:
            yield found


def route_errors(route: APIRoute) -> list[type[AppError]]:
    """Every error class the route may answer with, declared or implied by its input."""
    errors: dict[type[AppError], None] = {}
    for declared in _marks(route, ERRORS_ATTR):
        errors.update(dict.fromkeys(declared))
    parsed_body = any(d.body_params for d in _dependants(route.dependant))
    has_body = parsed_body or bool(getattr(route.endpoint, BODY_ATTR, None))
    takes_input = has_body or any(
        d.path_params or d.query_params or d.header_params or d.cookie_params
        for d in _dependants(route.dependant)
    )
    if takes_input:
        errors[Unprocessable] = None
    if has_body:
        errors[PayloadTooLarge] = None
    if parsed_body:
        # FastAPI's answer to a body it cannot even decode (not UTF-8).
        errors[BadRequest] = None
    return list(errors)


def route_security(route: APIRoute) -> frozenset[str] | None:
    """The schemes every dependency of the route accepts; None when none declares any."""
    accepted: frozenset[str] | None = None
    for schemes in _marks(route, SECURITY_ATTR):
        accepted = schemes if accepted is None else accepted & schemes
    return accepted


def _problem_response(status: int, errors: Iterable[type[AppError]]) -> dict[str, Any]:
    classes = sorted({(e.type, e.title) for e in errors})
    examples = {
        name: {
            "summary": title,
            "value": {
                "type": PROBLEM_BASE + name,
                "title": title,
                "status": status,
                "detail": title,
            },
        }
        for name, title in classes
    }
    names = ", ".join(f"`{name}`" for name, _ in classes)
    response: dict[str, Any] = {
        "description": f"{HTTPStatus(status).phrase}: {names}",
        "content": {
            PROBLEM_JSON: {
                "schema": {"$ref": REF.format(model="Problem")},
                "examples": examples,
            }
        },
    }
    if status in STATUS_HEADERS:
        response["headers"] = STATUS_HEADERS[status]
    return response


RATE_LIMITED = 429


def _success_rate_limit_headers(responses: dict[str, Any]) -> None:
    """Rate-limited routes send the quota headers on success too (not for exempt callers)."""
    optional = {
        name: {k: v for k, v in header.items() if k != "required"}
        for name, header in _RATE_LIMIT_HEADERS.items()
        if name != "Retry-After"
    }
    for status, response in responses.items():
        if status.startswith("2"):
            response.setdefault("headers", {}).update(optional)


def _add_models(document: dict[str, Any], models: Iterable[type[BaseModel]]) -> None:
    _, defs = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in defs.get("$defs", {}).items():
        schemas.setdefault(name, schema)


def _raw_body(document: dict[str, Any], operation: dict[str, Any], route: APIRoute) -> None:
    declared = getattr(route.endpoint, BODY_ATTR, None)
    if not declared:
        return
    models, examples = declared
    _add_models(document, models)
    refs = [{"$ref": REF.format(model=m.__name__)} for m in models]
    media: dict[str, Any] = {"schema": refs[0] if len(refs) == 1 else {"oneOf": refs}}
    if examples:
        media["examples"] = examples
    operation["requestBody"] = {"required": True, "content": {"application/json": media}}


def _plain_parameter_schemas(operation: dict[str, Any]) -> None:
    """A parameter is absent or a value: `anyOf [X, null]` is just X in a query string."""
    for parameter in operation.get("parameters", []):
        schema = parameter.get("schema", {})
        options = schema.get("anyOf")
        if not options:
            continue
        kept = [o for o in options if o.get("type") != "null"]
        if len(kept) == 1 and len(kept) < len(options):
            rest = {k: v for k, v in schema.items() if k != "anyOf"}
            parameter["schema"] = {**kept[0], **rest}


def _apply_settings(node: Any, settings: Settings) -> None:
    """Replace each `x-settings: {keyword: setting}` with `keyword: <value of the setting>`."""
    if isinstance(node, dict):
        bounds = node.pop("x-settings", None)
        if bounds:
            for keyword, setting in bounds.items():
                node[keyword] = getattr(settings, setting)
        for value in node.values():
            _apply_settings(value, settings)
    elif isinstance(node, list):
        for value in node:
            _apply_settings(value, settings)


def _summary(route: APIRoute) -> str:
    if route.summary:
        return route.summary
    doc = (route.endpoint.__doc__ or "").strip().splitlines()
    first = doc[0].strip().rstrip(".") if doc else ""
    return first or route.name.replace("_", " ").capitalize()


def _links(document: dict[str, Any]) -> None:
    """Link each `POST /things` (201 with an `id`) to the operations on `/things/{thing_id}`."""
    paths: dict[str, dict[str, Any]] = document.get("paths", {})
    for path, item in paths.items():
        created = item.get("post", {}).get("responses", {}).get("201")
        if created is None:
            continue
        for other, other_item in paths.items():
            rest = other.removeprefix(path + "/")
            if rest == other or "/" in rest or not (rest.startswith("{") and rest.endswith("}")):
                continue
            parameter = rest[1:-1]
            links = created.setdefault("links", {})
            for method, operation in other_item.items():
                links[f"{method.upper()}_{operation['operationId']}"] = {
                    "operationId": operation["operationId"],
                    "parameters": {parameter: "$response.body#/id"},
                    "description": f"the created resource's `{parameter}`",
                }


def complete(
    document: dict[str, Any], routes: Iterable[BaseRoute], settings: Settings
) -> dict[str, Any]:
    """Add problems, security, raw bodies, summaries, bounds and links to FastAPI's document."""
    _add_models(document, [Problem])
    components = document["components"]
    components["schemas"].update(SCHEMAS)
    components["securitySchemes"] = dict(SECURITY_SCHEMES)
    for name in ("HTTPValidationError", "ValidationError"):
        components.get("schemas", {}).pop(name, None)
    paths = document.get("paths", {})
    for context in routing.iter_route_contexts(list(routes)):
        # Routers are included lazily: the context is the route as mounted (full path,
        # the enclosing routers' dependencies), standing in for an APIRoute.
        if not isinstance(context.original_route, APIRoute) or not context.include_in_schema:
            continue
        route = cast(APIRoute, context)
        for method in sorted(route.methods or ()):
            operation = paths.get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            operation["summary"] = _summary(route)
            _raw_body(document, operation, route)
            _plain_parameter_schemas(operation)
            responses: dict[str, Any] = operation.setdefault("responses", {})
            by_status: dict[int, list[type[AppError]]] = {}
            for error in route_errors(route):
                by_status.setdefault(error.status, []).append(error)
            for status, errors in sorted(by_status.items()):
                documented = responses.get(str(status), {})
                problem = _problem_response(status, errors)
                problem["description"] = documented.get("description") or problem["description"]
                responses[str(status)] = problem
            if RATE_LIMITED in by_status:
                _success_rate_limit_headers(responses)
            security = route_security(route)
            if security is None:
                operation.pop("security", None)
            else:
                operation["security"] = [
                    {} if scheme == ANONYMOUS else {scheme: []} for scheme in sorted(security)
                ]
    _apply_settings(document, settings)
    _links(document)
    return document
