"""Error hierarchy rendered as RFC 9457 problem+json; no internals reach the client."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pymongo.errors import ConnectionFailure, PyMongoError
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("app.errors")

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "/problems/"


# The class of each HTTP status (`BadRequest`...), filled as they are declared below.
_BY_STATUS: dict[int, type[AppError]] = {}


class AppError(Exception):
    """Base of every error the service raises on purpose; carries its own status."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal server error"

    def __init_subclass__(
        cls, *, status: int | None = None, type: str | None = None, title: str | None = None
    ) -> None:
        """`class NotFound(AppError, status=404, ...)`: the class of that HTTP status, which
        also renders Starlette's own errors of it (unknown route: 404, wrong method: 405)."""
        super().__init_subclass__()
        if status is not None:
            cls.status = status
            _BY_STATUS[status] = cls
        if type is not None:
            cls.type = type
        if title is not None:
            cls.title = title

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.detail = detail or self.title
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        super().__init__(self.detail)


class BadRequest(AppError, status=400, type="bad-request", title="Bad request"):
    """The request is malformed in a way validation could not name."""


class Unauthorized(AppError, status=401, type="unauthorized", title="Authentication required"):
    """No valid credentials; always answered with `WWW-Authenticate: Bearer`."""

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.headers.setdefault("WWW-Authenticate", "Bearer")


class Forbidden(AppError, status=403, type="forbidden", title="Forbidden"):
    """Authenticated, but the principal may not do this (used only where existence is public)."""


class NotFound(AppError, status=404, type="not-found", title="Not found"):
    """Missing, or not visible to the caller: both look the same from outside."""


class MethodNotAllowed(AppError, status=405, type="method-not-allowed", title="Method not allowed"):
    """The route exists but not with this method."""


class Conflict(AppError, status=409, type="conflict", title="Conflict"):
    """The request conflicts with the current state (duplicate, cycle, not empty)."""


class PayloadTooLarge(AppError, status=413, type="payload-too-large", title="Payload too large"):
    """The request body is over the configured cap."""


class Unprocessable(AppError, status=422, type="validation-error", title="Validation failed"):
    """Well-formed but semantically invalid input."""


class RateLimited(AppError, status=429, type="rate-limited", title="Too many requests"):
    """Too many requests for the caller's quota."""


class ServiceUnavailable(
    AppError, status=503, type="service-unavailable", title="Service unavailable"
):
    """A dependency is down; the client may retry later."""


def problem_response(
    *,
    status: int,
    type_: str,
    title: str,
    detail: str,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """Build one problem+json response (RFC 9457)."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + type_,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if extra:
        body.update(extra)
    return JSONResponse(
        body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_JSON
    )


def error_response(error: AppError, *, instance: str) -> JSONResponse:
    """The problem+json answer of `error` (its status, type, title, detail, headers, extra)."""
    return problem_response(
        status=error.status,
        type_=error.type,
        title=error.title,
        detail=error.detail,
        instance=instance,
        headers=error.headers,
        extra=error.extra,
    )


async def app_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Render a domain error."""
    assert isinstance(exc, AppError)
    return error_response(exc, instance=request.url.path)


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Render Starlette's own errors (unknown route, wrong method) as problems."""
    assert isinstance(exc, StarletteHTTPException)
    cls = _BY_STATUS.get(exc.status_code)
    phrase = HTTPStatus(exc.status_code).phrase
    detail = exc.detail if isinstance(exc.detail, str) else phrase
    return problem_response(
        status=exc.status_code,
        type_=cls.type if cls else "http-error",
        title=cls.title if cls else phrase,
        detail=detail,
        instance=request.url.path,
        headers=exc.headers,
    )


def _clean_validation_errors(errors: Any) -> list[dict[str, Any]]:
    """Keep where and why; drop the submitted values (they may hold secrets)."""
    cleaned = []
    for err in errors:
        cleaned.append(
            {
                "loc": list(err.get("loc", ())),
                "msg": err.get("msg", ""),
                "type": err.get("type", ""),
            }
        )
    return cleaned


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Render request validation failures as 422 problems with an `errors` list."""
    assert isinstance(exc, RequestValidationError)
    errors = _clean_validation_errors(exc.errors())
    malformed = any(e["type"] == "json_invalid" for e in errors)
    return problem_response(
        status=422,
        type_="malformed-json" if malformed else Unprocessable.type,
        title="Malformed JSON body" if malformed else Unprocessable.title,
        detail="The request body is not valid JSON"
        if malformed
        else f"{len(errors)} invalid field(s) in the request",
        instance=request.url.path,
        extra={"errors": errors},
    )


class DatabaseUnavailable(ServiceUnavailable):
    """MongoDB did not answer in time (or at all): the request stopped, nothing hangs."""

    type = "database-unavailable"
    title = "Database unavailable"


async def database_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """A database timeout or outage is 503 with `Retry-After`; other driver errors are 500."""
    assert isinstance(exc, PyMongoError)
    if not (exc.timeout or isinstance(exc, ConnectionFailure)):
        return await unhandled_error_handler(request, exc)
    logger.warning(
        "database unavailable", extra={"path": request.url.path, "error": type(exc).__name__}
    )
    error = DatabaseUnavailable(
        "The database did not answer in time; retry shortly", headers={"Retry-After": "5"}
    )
    return error_response(error, instance=request.url.path)


async def unhandled_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Log the failure with its traceback and tell the client nothing internal."""
    logger.exception("unhandled error", extra={"path": request.url.path})
    return problem_response(
        status=500,
        type_=AppError.type,
        title=AppError.title,
        detail="An unexpected error occurred; it has been logged",
        instance=request.url.path,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register every handler on the app."""
    app.add_exception_handler(AppError, app_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(PyMongoError, database_error_handler)
    app.add_exception_handler(Exception, unhandled_error_handler)
