"""One pure ASGI middleware for every HTTP request: request id and access log, Prometheus
metrics, the request body size cap, headers recorded by the route (rate limits), and direct
dispatch of the few hot routes that bypass the router.

It was four middlewares; each layer cost a closure, a copied `http.response.start` message and
a header scan per request, a large share of a single-reading ingest's CPU. One layer does it
all in one pass, in the same order as before: metrics and the access log see every answer
(413s included), the request id is on every answer, recorded headers only on the route's.
"""

from __future__ import annotations

import logging
import random
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prometheus_client.metrics import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import PayloadTooLarge, error_response
from app.core.logging import request_id_var
from app.core.metrics import HTTP_LATENCY, HTTP_REQUESTS

access_logger = logging.getLogger("app.access")

# Requests that match no route share one label (logs and metrics), so random paths cannot
# add series or carry data into the logs.
UNMATCHED_ROUTE = "<unmatched>"

REQUEST_ID_HEADER = "x-request-id"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})

# Headers a route recorded for its answer (e.g. rate limits), from the request's state.
HeaderHook = Callable[[Mapping[str, Any]], Mapping[str, str]]
# A hot route served without the router: returns the ASGI app for the request, or None.
FastRoute = Callable[[Scope], ASGIApp | None]


class HttpMiddleware:
    """A pure ASGI middleware for HTTP requests; other scopes (lifespan, WebSocket) pass by."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle an HTTP request; pass anything else to the app untouched."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one HTTP request (subclasses wrap `self.app`)."""
        await self.app(scope, receive, send)


class _Series:
    """Prometheus children by label values, resolved once (`labels()` locks and hashes)."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], Counter] = {}
        self.latency: dict[tuple[str, str], Histogram] = {}

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request and observe its duration."""
        counter = self.requests.get((method, route, status))
        if counter is None:
            counter = HTTP_REQUESTS.labels(method=method, route=route, status=str(status))
            self.requests[(method, route, status)] = counter
        counter.inc()
        histogram = self.latency.get((method, route))
        if histogram is None:
            histogram = HTTP_LATENCY.labels(method=method, route=route)
            self.latency[(method, route)] = histogram
        histogram.observe(seconds)


class RequestMiddleware(HttpMiddleware):
    """Request id, access log, metrics, body cap, recorded headers and hot routes, in one layer.

    - Every request gets an id (the caller's `X-Request-Id` if safe), echoed on the answer and
      in the logging context; it is logged once, by route template, never by raw path (every
      error, and `access_log_sample_rate` of the successes).
    - Every request is counted and timed by method, route template and status.
    - A body over `max_body_bytes` is answered 413 before the app reads it (a chunked body is
      buffered up to the cap, then replayed).
    - `header_hooks` add the headers a route recorded in the request's state; a header the
      answer already carries is left alone.
    - `fast_routes` may serve a request themselves instead of the router.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        header_hooks: Sequence[HeaderHook] = (),
        fast_routes: Sequence[FastRoute] = (),
        access_log_sample_rate: float = 1.0,
    ) -> None:
        super().__init__(app)
        self.max_body_bytes = max_body_bytes
        self.sample_rate = access_log_sample_rate
        self.header_hooks = tuple(header_hooks)
        self.fast_routes = tuple(fast_routes)
        self._series = _Series()

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request (see the class)."""
        started = time.perf_counter()
        incoming = declared = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = incoming if incoming is not None else value.decode("latin-1")
            elif name == b"content-length":
                declared = declared if declared is not None else value.decode("latin-1")
        if incoming is not None and _SAFE_REQUEST_ID.fullmatch(incoming):
            request_id = incoming
        else:
            request_id = uuid.uuid4().hex
        token = request_id_var.set(request_id)
        # Created here so that the dict the route writes into is the one read below.
        state = scope.setdefault("state", {})
        status = 500
        hooks = self.header_hooks
        id_header = (b"x-request-id", request_id.encode())

        async def send_wrapped(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                if state and hooks:
                    present = {name.lower() for name, _ in headers}
                    for hook in hooks:
                        for name, value in hook(state).items():
                            key = name.lower().encode()
                            if key not in present:
                                headers.append((key, value.encode()))
                headers.append(id_header)
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self._serve(scope, receive, send_wrapped, declared, state)
        finally:
            # The router stores the matched route in the (shared) scope; its `path` is the
            # template, e.g. /api/v1/devices/{device_id}, never the raw path (paths carry ids
            # and invitees' email addresses, and query strings may carry tokens).
            route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            method = scope["method"]
            elapsed = time.perf_counter() - started
            self._series.record(method if method in _METHODS else "OTHER", route, status, elapsed)
            if access_logger.isEnabledFor(logging.INFO) and (
                status >= 400 or self.sample_rate >= 1.0 or random.random() < self.sample_rate
            ):
                access_logger.info(
                    "request",
                    extra={
                        "method": method,
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                    },
                )
            request_id_var.reset(token)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        declared: str | None,
        state: dict[str, Any],
    ) -> None:
        """The body cap, then a hot route or the app."""
        if declared is not None:
            if not declared.isdigit() or int(declared) > self.max_body_bytes:
                await self._reject(scope, receive, send)
                return
        elif scope["method"] not in _BODYLESS:
            # No Content-Length (chunked upload): read it all, within the cap, then replay it.
            replay = await self._buffer(scope, receive, send)
            if replay is None:
                return
            receive = replay
        for fast_route in self.fast_routes:
            fast = fast_route(scope)
            if fast is not None:
                await fast(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _buffer(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """Read a chunked body within the cap; a `receive` replaying it, or None if answered."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._reject(scope, receive, send)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = PayloadTooLarge(
            f"The request body is limited to {self.max_body_bytes} bytes",
            headers={"Connection": "close"},
        )
        response = error_response(error, instance=scope["path"])
        await response(scope, receive, send)
