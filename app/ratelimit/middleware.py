"""Pure ASGI middleware that puts the rate-limit headers on every limited response."""

from __future__ import annotations

from starlette.types import Message, Receive, Scope, Send

from app.core.middleware import HttpMiddleware
from app.ratelimit.dependencies import STATE_KEY, rate_limit_headers


class RateLimitHeadersMiddleware(HttpMiddleware):
    """Add the headers for the decisions the request's dependencies recorded.

    Works for any response (models, `Response` objects, errors); a header the response
    already carries (a 429 sets its own) is left alone.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request, adding headers when the response starts."""
        # Created here so that the dict the route writes into is the one read below.
        state = scope.setdefault("state", {})

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and state.get(STATE_KEY):
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in rate_limit_headers(state[STATE_KEY]).items():
                    if name.lower().encode() not in present:
                        headers.append((name.lower().encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
