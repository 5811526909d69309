"""API schemas of the rate-limiting domain."""

from __future__ import annotations

from pydantic import BaseModel, Field


class QuotaRead(BaseModel):
    """The caller's request quota, as shown by `GET /auth/me`."""

    policy: str | None = Field(description="Policy name; null when the caller is exempt")
    exempt: bool = Field(description="True for callers no limit applies to (master token)")
    limit: int | None = Field(description="Requests admitted per sliding window")
    window_s: int | None = Field(description="Length of the sliding window in seconds")
    remaining: int | None = Field(
        default=None, description="Requests left right now, when this request was counted"
    )
    reset_s: int | None = Field(
        default=None, description="Seconds until the quota is fully restored, when known"
    )
