"""Single-reading ingest without the router: `POST /api/v1/devices/{id}/readings` with a key.

Most devices post one reading per request, and FastAPI's routing and dependency resolution
cost more CPU than everything else on that path. For the common request (a device key in
`X-Device-Key` or `Authorization: Bearer dk_...`, a well-formed device id and
`Idempotency-Key`), `IngestRoute` runs the very same steps as the route's dependencies, in the
same order, by calling the same functions:

1. `authenticate_request` (key check; failures count against the client address);
2. the router-wide limit, which a device skips on this self-limited route;
3. `admit` (any caller), `own_device` (another device's id is 404, counted on its own key);
4. `count_ingest` (the device's or its product's ingest limit);
5. `store_readings` (`ingest.receive`), answered 202 with `IngestResult`.

Errors are rendered by the app's own exception handlers (`app.core.fastpath`); anything they
do not handle is raised, as from the router. Any other request (no device key, a malformed
header or id, a trailing slash, a mount under a root path) goes to the router unchanged, so the
route in `app.readings.router` stays the one documented in OpenAPI and the reference behaviour.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.auth import dependencies as auth_dependencies
from app.auth import device_keys
from app.core import idempotency
from app.core.fastpath import FastPath
from app.core.routing import API_PREFIX
from app.core.services import services_of
from app.readings.dependencies import count_ingest, own_device, store_readings

_PATH = re.compile(rf"^{re.escape(API_PREFIX)}/devices/([0-9a-f]{{24}})/readings$")
_DEVICE_KEY = auth_dependencies.DEVICE_KEY_HEADER.lower().encode()
# `Authorization: Bearer dk_...`, the other way a device sends its key.
_BEARER_DEVICE_KEY = b"bearer " + device_keys.KEY_PREFIX.encode()


class IngestRoute(FastPath):
    """A `FastRoute` for `app.core.middleware.RequestMiddleware` (see the module)."""

    def __call__(self, scope: Scope) -> ASGIApp | None:
        """This route's handler for a request it serves the common way, or None."""
        if scope["method"] != "POST" or scope.get("root_path"):
            return None
        match = _PATH.match(scope["path"])
        if match is None:
            return None
        device_key = authorization = idempotency_key = None
        for name, value in scope["headers"]:
            if name == _DEVICE_KEY:
                device_key = value
            elif name == b"authorization" and authorization is None:
                authorization = value
            elif name == b"idempotency-key" and idempotency_key is None:
                idempotency_key = value.decode("latin-1")
        if device_key is None and (
            authorization is None or authorization[:10].lower() != _BEARER_DEVICE_KEY
        ):
            return None
        # Any other Idempotency-Key is the router's to refuse (the route's header pattern).
        if idempotency_key is not None and not idempotency.is_valid_key(idempotency_key):
            return None
        device_id = match.group(1)

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            await self.serve(scope, receive, send, device_id, idempotency_key)

        return app

    async def serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        device_id: str,
        idempotency_key: str | None,
    ) -> None:
        """Run the route's steps (see the module) and send the answer."""

        async def respond(request: Request) -> Response:
            services = services_of(request.app)
            authentication = await auth_dependencies.authenticate_request(request, services)
            principal = await auth_dependencies.admit(
                services, authentication, auth_dependencies.any_caller
            )
            context = await own_device(
                request, device_id=device_id, principal=principal, services=services
            )
            context = await count_ingest(request, device=context, services=services)
            answer = await store_readings(
                request, services, device=context, idempotency_key=idempotency_key
            )
            return Response(
                answer.result.model_dump_json(),
                status_code=202,
                media_type="application/json",
                headers={"Idempotent-Replayed": "true"} if answer.replayed else None,
            )

        await self.run(scope, receive, send, respond)
