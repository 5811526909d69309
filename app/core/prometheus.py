"""`GET /metrics` for Prometheus (HTTP requests are counted by `app.core.middleware`)."""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import SecretStr

from app.core.errors import Forbidden, NotFound
from app.core.middleware import UNMATCHED_ROUTE
from app.core.openapi import raises
from app.core.services import ServicesDep

__all__ = ["UNMATCHED_ROUTE", "router"]

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
