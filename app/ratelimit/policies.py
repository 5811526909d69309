"""Named policies (a limit per sliding window), from settings.

Which policy applies to which caller is decided in `app.auth.quotas`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from app.core.config import Settings

ANONYMOUS = "anonymous"
USER = "user"
ADMIN = "admin"
DEVICE = "device"
PRODUCT_CREATE = "product_create"
AUTH_FAILURES = "auth_failures"
INVITES = "invites"


@dataclass(frozen=True, slots=True)
class Policy:
    """At most `limit` requests in any sliding window of `window_ms` milliseconds."""

    name: str
    limit: int
    window_ms: int
    admin_exempt: bool = False

    @property
    def window_s(self) -> int:
        """The window in whole seconds, as the `w` of the `RateLimit-Policy` header."""
        return max(1, math.ceil(self.window_ms / 1000))


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def policies_from(settings: Settings) -> dict[str, Policy]:
    """Every named policy, as configured."""
    return {
        ANONYMOUS: Policy(
            ANONYMOUS,
            settings.rate_limit_anonymous_limit,
            _ms(settings.rate_limit_anonymous_window_s),
        ),
        USER: Policy(USER, settings.rate_limit_user_limit, _ms(settings.rate_limit_user_window_s)),
        ADMIN: Policy(
            ADMIN, settings.rate_limit_admin_limit, _ms(settings.rate_limit_admin_window_s)
        ),
        DEVICE: Policy(
            DEVICE, settings.rate_limit_device_limit, _ms(settings.rate_limit_device_window_s)
        ),
        PRODUCT_CREATE: Policy(
            PRODUCT_CREATE,
            settings.rate_limit_product_create_limit,
            _ms(settings.rate_limit_product_create_window_s),
            admin_exempt=True,
        ),
        AUTH_FAILURES: Policy(
            AUTH_FAILURES,
            settings.rate_limit_auth_failures_limit,
            _ms(settings.rate_limit_auth_failures_window_s),
        ),
        INVITES: Policy(
            INVITES,
            settings.rate_limit_invites_limit,
            _ms(settings.rate_limit_invites_window_s),
            admin_exempt=True,
        ),
    }
