"""Errors of the rate-limiting domain."""

from __future__ import annotations

from app.core.errors import RateLimited


class RateLimitExceeded(RateLimited):
    """The caller's quota under one policy is used up; `Retry-After` says when to come back."""

    type = "rate-limited"
