"""The rate-limit headers of every limited answer, for `app.core.middleware`'s header hook."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.ratelimit.dependencies import STATE_KEY, rate_limit_headers


def recorded_headers(state: Mapping[str, Any]) -> Mapping[str, str]:
    """The headers for the decisions the request's dependencies recorded in its state.

    Works for any response (models, `Response` objects, errors); the middleware leaves alone
    a header the response already carries (a 429 sets its own).
    """
    recorded = state.get(STATE_KEY)
    return rate_limit_headers(recorded) if recorded else {}
