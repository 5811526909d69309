"""What the routes served without the router share (`RequestMiddleware`'s `fast_routes`).

A fast route runs the same functions as its FastAPI route's dependencies and endpoint, for the
common request only; what it must still do as the router does is here: put the matched route
in the scope (the access log, metrics and `limits_itself` read it), and render errors with the
app's own exception handlers, raising what they do not handle, as from the router.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

Handler = Callable[[Request, Exception], Any]


class FastPath:
    """The shared part of a route served without the router (subclasses decide which requests
    they serve and how)."""

    def __init__(self, route: APIRoute, exception_handlers: Mapping[Any, Handler]) -> None:
        self.route = route
        # As Starlette's ExceptionMiddleware has them: `Exception` and 500 belong to the
        # outermost ServerErrorMiddleware, which sees whatever is raised from here.
        self.handlers = {
            key: handler
            for key, handler in exception_handlers.items()
            if isinstance(key, type) and key is not Exception
        }

    async def run(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        respond: Callable[[Request], Awaitable[Response]],
    ) -> None:
        """Send what `respond` answers for this request, or its error as the app renders it."""
        scope["route"] = self.route
        scope["endpoint"] = self.route.endpoint
        request = Request(scope, receive)
        response: Response
        try:
            response = await respond(request)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise
            response = await handler(request, exc)
        await response(scope, receive, send)

    def _handler(self, exc: Exception) -> Handler | None:
        for cls in type(exc).__mro__:
            handler = self.handlers.get(cls)
            if handler is not None:
                return handler
        return None
