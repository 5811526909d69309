"""Latest values without the router: `GET /api/v1/devices/{id}/readings/latest` with a token.

Apps read latest values far more often than anything else, and with the principal, grants,
access paths and latest values cached, FastAPI's routing and dependency resolution were most
of the API's CPU on that call. For the common request (`Authorization: Bearer <token>` of a
user, admin or the master token, a well-formed device id, no query string), `LatestRoute`
runs the very same steps as the route's dependencies and endpoint, in the same order, by
calling the same functions:

1. `authenticate_request` (the token check; failures count against the client address);
2. `enforce_rate_limit`, the router-wide limit;
3. `admit` (any caller; records the caller as seen);
4. `readable_device` (the catalog's permission check, 404 when invisible);
5. the route's endpoint, `latest_readings`, its answer encoded by FastAPI's own
   `serialize_response` against the route's response model.

Errors are rendered by the app's own exception handlers (`app.core.fastpath`). Any other
request (a device key, no credentials, `?metrics=`, a malformed id, HEAD, a trailing slash, a
mount under a root path) goes to the router unchanged, so the route in `app.readings.router`
stays the one documented in OpenAPI and the reference behaviour.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from fastapi.routing import APIRoute, serialize_response
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.auth import dependencies as auth_dependencies
from app.auth import device_keys
from app.auth.quotas import enforce_rate_limit
from app.core.fastpath import FastPath, Handler
from app.core.routing import API_PREFIX
from app.core.services import services_of
from app.readings.dependencies import readable_device
from app.readings.router import latest_readings

_PATH = re.compile(rf"^{re.escape(API_PREFIX)}/devices/([0-9a-f]{{24}})/readings/latest$")
_DEVICE_KEY = auth_dependencies.DEVICE_KEY_HEADER.lower().encode()
_BEARER = b"bearer "
_BEARER_DEVICE_KEY = _BEARER + device_keys.KEY_PREFIX.encode()
_ENCODING = ("include", "exclude", "by_alias", "exclude_unset", "exclude_defaults", "exclude_none")


class LatestRoute(FastPath):
    """A `FastRoute` for `app.core.middleware.RequestMiddleware` (see the module)."""

    def __init__(self, route: APIRoute, exception_handlers: Mapping[Any, Handler]) -> None:
        super().__init__(route, exception_handlers)
        # The route this answers for, with its response model (what `respond` encodes by).
        assert route.endpoint is latest_readings
        assert route.response_field is not None
        # The route's `response_model_*` options, as FastAPI passes them to the encoder.
        self.encoding = {name: getattr(route, f"response_model_{name}") for name in _ENCODING}

    def __call__(self, scope: Scope) -> ASGIApp | None:
        """This route's handler for a request it serves the common way, or None."""
        if (
            scope["method"] != "GET"
            or scope["query_string"]
            or scope.get("root_path")
            or (match := _PATH.match(scope["path"])) is None
        ):
            return None
        authorization = None
        for name, value in scope["headers"]:
            if name == _DEVICE_KEY:
                return None
            if name == b"authorization" and authorization is None:
                authorization = value[: len(_BEARER_DEVICE_KEY)].lower()
        if (
            authorization is None
            or not authorization.startswith(_BEARER)
            or authorization == _BEARER_DEVICE_KEY
        ):
            return None
        device_id = match.group(1)

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            await self.run(scope, receive, send, lambda request: self.respond(request, device_id))

        return app

    async def respond(self, request: Request, device_id: str) -> Response:
        """Run the route's steps (see the module); its answer."""
        services = services_of(request.app)
        authentication = await auth_dependencies.authenticate_request(request, services)
        await enforce_rate_limit(
            request, await auth_dependencies.get_optional_principal(authentication)
        )
        principal = await auth_dependencies.admit(
            services, authentication, auth_dependencies.any_caller
        )
        device = await readable_device(device_id=device_id, principal=principal, services=services)
        answer = await latest_readings(device, services)
        content = await serialize_response(
            field=self.route.response_field,
            response_content=answer,
            dump_json=True,
            **self.encoding,
        )
        return Response(content, media_type="application/json")
