"""API schemas of the alerts domain: rule conditions and notifications, rules, alarms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from app.alerts.models import Alarm, AlarmStatus, AlertRule, ConditionType, Severity, Value
from app.catalog.telemetry import MetricName
from app.core.models import IdStr

Op = Literal[">", ">=", "<", "<=", "==", "!="]
Finite = Annotated[float, Field(allow_inf_nan=False)]
_WEEK_S = 7 * 86_400


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClearCondition(_Strict):
    """An explicit clear condition: the alarm clears when `metric op value` holds."""

    op: Op
    value: Finite


class ThresholdCondition(_Strict):
    """`metric op value`, optionally held for `for_s` (reading time), with a clear rule.

    Without `clear` or `hysteresis` the alarm clears as soon as the condition stops holding;
    `hysteresis` h clears `> v` only below `v - h` (and `< v` only above `v + h`).
    """

    type: Literal[ConditionType.THRESHOLD]
    metric: MetricName
    op: Op
    value: Finite
    for_s: int | None = Field(default=None, ge=1, le=_WEEK_S)
    hysteresis: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    clear: ClearCondition | None = None

    @model_validator(mode="after")
    def _one_clear_rule(self) -> ThresholdCondition:
        if self.hysteresis is not None and self.clear is not None:
            raise PydanticCustomError(
                "alert_condition_fields", "give either hysteresis or clear, not both"
            )
        if self.hysteresis is not None and self.op in ("==", "!="):
            raise PydanticCustomError(
                "alert_condition_fields", "hysteresis applies to <, <=, > and >= only"
            )
        return self


class NoDataCondition(_Strict):
    """No reading (of any metric, or of `metric`) and no heartbeat for `after_s` seconds."""

    type: Literal[ConditionType.NO_DATA]
    after_s: int = Field(ge=10, le=30 * 86_400)
    metric: MetricName | None = None


class AnomalyCondition(_Strict):
    """|z| > k against the device's own rolling mean and deviation of `metric`.

    The mean and variance are exponentially weighted over about `window` values (constant
    state per device, nothing rescanned); nothing fires before `min_samples` values. The
    alarm clears once |z| <= `clear_k` (default `k`).
    """

    type: Literal[ConditionType.ANOMALY]
    metric: MetricName
    k: float = Field(gt=0, le=1000, allow_inf_nan=False)
    window: int = Field(ge=2)
    min_samples: int = Field(default=10, ge=2)
    clear_k: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> AnomalyCondition:
        if self.clear_k is not None and self.clear_k > self.k:
            raise PydanticCustomError(
                "alert_condition_fields", "clear_k must not be greater than k"
            )
        return self


class RateCondition(_Strict):
    """More than `n` readings, or a change of more than `delta` in `metric`, in `window_s`."""

    type: Literal[ConditionType.RATE]
    window_s: int = Field(ge=1, le=86_400)
    n: int | None = Field(default=None, ge=1)
    delta: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    metric: MetricName | None = None

    @model_validator(mode="after")
    def _one_measure(self) -> RateCondition:
        if (self.n is None) == (self.delta is None):
            raise PydanticCustomError("alert_condition_fields", "give exactly one of n and delta")
        if self.delta is not None and self.metric is None:
            raise PydanticCustomError("alert_condition_fields", "delta needs a metric")
        return self


Condition = Annotated[
    ThresholdCondition | NoDataCondition | AnomalyCondition | RateCondition,
    Field(discriminator="type"),
]


class WebhookTarget(_Strict):
    """An HTTPS (or HTTP) endpoint and the shared secret its requests are signed with."""

    url: str = Field(
        max_length=2000,
        # \x1c-\x1f and \x85 spelled out: Python's \s has them, the Rust regex that validates
        # has only \x85, and schema-based generators may have neither.
        pattern=(
            r"^https?://[^\s\x1c-\x1f\x85/@:?#\[\]\\]+(:[0-9]{1,5})?"
            r"([/?#][^\s\x1c-\x1f\x85]*)?$"
        ),
        description="an http:// or https:// URL with a host and no credentials",
    )
    secret: str = Field(min_length=16, max_length=256)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.username or parts.password:
            raise ValueError("credentials in the URL are not allowed; use the secret")
        return value


class WebhookRead(BaseModel):
    """A webhook target as shown: its URL only (the secret is never returned)."""

    url: str


# Whitespace spelled out beside \s, as in WebhookTarget.url.
_EMAIL = r"^[^@\s\x1c-\x1f\x85]+@[^@\s\x1c-\x1f\x85]+\.[^@\s\x1c-\x1f\x85]+$"


class NotifyIn(_Strict):
    """Who hears about this rule's alarms, and when."""

    emails: list[Annotated[str, Field(max_length=254, pattern=_EMAIL)]] = Field(
        default_factory=list, max_length=10
    )
    webhooks: list[WebhookTarget] = Field(default_factory=list, max_length=5)
    on_clear: bool = True
    on_ack: bool = False
    # Per rule: notifications closer together than this are suppressed (and logged as such).
    min_interval_s: int = Field(default=0, ge=0, le=86_400)
    # With min_interval_s: what was suppressed is emailed as one digest once the interval ends.
    digest: bool = False

    @model_validator(mode="after")
    def _digest_needs_interval(self) -> NotifyIn:
        if self.digest and self.min_interval_s == 0:
            raise PydanticCustomError(
                "alert_notify_fields", "a digest collects what min_interval_s holds back: set it"
            )
        return self


class NotifyRead(BaseModel):
    """Notification settings as shown."""

    emails: list[str]
    webhooks: list[WebhookRead]
    on_clear: bool
    on_ack: bool
    min_interval_s: int
    digest: bool


class Scope(_Strict):
    """What a rule applies to: a product's devices, a folder's (all below it), one device."""

    type: Literal["product", "folder", "device"]
    id: IdStr


class RuleCreate(_Strict):
    """A new alert rule (editor on its scope)."""

    name: str = Field(min_length=1, max_length=100)
    scope: Scope
    severity: Severity
    enabled: bool = True
    condition: Condition
    notify: NotifyIn = Field(default_factory=NotifyIn)


class RuleUpdate(_Strict):
    """Changes to a rule; its scope cannot change."""

    name: str | None = Field(default=None, min_length=1, max_length=100)
    severity: Severity | None = None
    enabled: bool | None = None
    condition: Condition | None = None
    notify: NotifyIn | None = None


class RuleRead(BaseModel):
    """A rule as shown."""

    id: IdStr
    name: str
    scope: Scope
    severity: Severity
    enabled: bool
    condition: Condition
    notify: NotifyRead
    created_by: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, rule: AlertRule) -> RuleRead:
        """The API view of a stored rule."""
        stored = rule.notify
        notify = {
            "emails": stored.get("emails", []),
            "webhooks": [{"url": w["url"]} for w in stored.get("webhooks", [])],
            "on_clear": stored.get("on_clear", True),
            "on_ack": stored.get("on_ack", False),
            "min_interval_s": stored.get("min_interval_s", 0),
            "digest": bool(stored.get("digest", False)),
        }
        return cls.model_validate(
            {
                "id": str(rule.id),
                "name": rule.name,
                "scope": {"type": rule.scope_type, "id": rule.scope_id},
                "severity": rule.severity,
                "enabled": rule.enabled,
                "condition": rule.condition,
                "notify": notify,
                "created_by": rule.created_by,
                "created_at": rule.created_at,
                "updated_at": rule.updated_at,
            }
        )


class RuleFilters(BaseModel):
    """List filters for rules."""

    scope_type: Literal["product", "folder", "device"] | None = None
    scope_id: IdStr | None = None


class HistoryEntry(BaseModel):
    """One change of an alarm: what, who (a uid, `system` or `master`), when, why."""

    action: str
    by: str
    at: datetime
    reason: str | None = None


def ms_time(ms: int | None) -> datetime | None:
    """An epoch-milliseconds field as an aware datetime."""
    if ms is None:
        return None
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


class AlarmRead(BaseModel):
    """An alarm as shown: its state (active/cleared x acknowledged), counts and history."""

    id: IdStr
    rule_id: str
    rule_name: str
    severity: Severity
    condition_type: ConditionType
    device_id: str
    device_name: str | None
    product_id: str
    status: AlarmStatus
    acknowledged: bool
    metric: str | None
    count: int
    first_value: Value
    last_value: Value
    raised_at: datetime
    last_at: datetime
    cleared_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    cleared_by: str | None
    history: list[HistoryEntry]

    @classmethod
    def of(cls, alarm: Alarm) -> AlarmRead:
        """The API view of a stored alarm."""
        data: dict[str, Any] = alarm.model_dump(
            exclude={
                "active_key",
                "folder_path",
                "created_at",
                "raised_reason",
                "acknowledged_reason",
                "cleared_reason",
            }
        )
        data["id"] = str(alarm.id)
        data["raised_at"] = ms_time(alarm.raised_ms)
        data["last_at"] = ms_time(alarm.last_ms)
        data["cleared_at"] = ms_time(alarm.cleared_ms)
        data["acknowledged_at"] = ms_time(alarm.acknowledged_ms)
        ack_reason = alarm.acknowledged_reason
        history = [
            ("raised", alarms_system(), alarm.raised_ms, alarm.raised_reason),
            ("acknowledged", alarm.acknowledged_by, alarm.acknowledged_ms, ack_reason),
            ("cleared", alarm.cleared_by, alarm.cleared_ms, alarm.cleared_reason),
        ]
        data["history"] = sorted(
            (
                {"action": action, "by": by or "", "at": ms_time(ms), "reason": reason}
                for action, by, ms, reason in history
                if ms is not None
            ),
            key=lambda h: h["at"],
        )
        return cls.model_validate(data)


def alarms_system() -> str:
    """Who made the changes nobody made by hand."""
    return "system"


class AlarmFilters(BaseModel):
    """List filters for alarms."""

    status: AlarmStatus | None = None
    severity: Severity | None = None
    acknowledged: bool | None = None
    device_id: IdStr | None = None
    folder_id: IdStr | None = None
    rule_id: IdStr | None = None


class AlarmChange(_Strict):
    """Why an alarm is acknowledged or cleared by hand."""

    reason: str | None = Field(default=None, max_length=500)


class StateCounts(BaseModel):
    """Alarms of one severity in each state."""

    active_unacknowledged: int = 0
    active_acknowledged: int = 0
    cleared_unacknowledged: int = 0
    cleared_acknowledged: int = 0


class AlarmCounts(BaseModel):
    """Alarm counts by severity and state, of the alarms the caller can see."""

    total: int
    by_severity: dict[Severity, StateCounts]
