"""HTTP metrics by route template, and `GET /metrics` for Prometheus."""

from __future__ import annotations

import hmac
import ipaddress
import time

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import SecretStr
from starlette.types import Message, Receive, Scope, Send

from app.core.errors import Forbidden, NotFound
from app.core.metrics import HTTP_LATENCY, HTTP_REQUESTS
from app.core.middleware import UNMATCHED_ROUTE, HttpMiddleware
from app.core.openapi import raises
from app.core.services import ServicesDep

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class PrometheusMiddleware(HttpMiddleware):
    """Count and time every HTTP request by method, route template and status."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request, then record it under the template the router matched."""
        started = time.perf_counter()
        status = 500

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_recording_status)
        finally:
            # The router stores the matched route in the (shared) scope; its `path` is the
            # template, e.g. /api/v1/devices/{device_id}, never the raw path.
            route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            HTTP_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
            HTTP_LATENCY.labels(method=method, route=route).observe(time.perf_counter() - started)


router = APIRouter(tags=["operations"])


class MetricsDisabled(NotFound):
    """`/metrics` is only for loopback when no METRICS_TOKEN is set."""

    type = "not-found"


class MetricsTokenRequired(Forbidden):
    """A non-loopback scrape without the right bearer token."""

    type = "metrics-token-required"


def _is_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def authorize_scrape(request: Request, token: SecretStr | None) -> None:
    """Open on loopback; elsewhere `Authorization: Bearer <METRICS_TOKEN>`, or 404 if unset."""
    if _is_loopback(request):
        return
    if token is None:
        raise MetricsDisabled()
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(credentials.encode(), expected):
        raise MetricsTokenRequired("A valid metrics token is required")


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    response_model=None,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
@raises(MetricsDisabled, MetricsTokenRequired)
async def metrics(request: Request, services: ServicesDep) -> Response:
    """Refresh the figures kept outside this process, then render the registry."""
    authorize_scrape(request, services.settings.metrics_token)
    await services.refresh_metrics()
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
