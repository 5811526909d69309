"""Errors of the alerts domain."""

from __future__ import annotations

from app.core.errors import Conflict, NotFound, Unprocessable


class RuleNotFound(NotFound):
    """No such alert rule, or the caller may not see its scope."""

    type = "alert-rule-not-found"
    title = "Alert rule not found"


class AlarmNotFound(NotFound):
    """No such alarm, or the caller may not see its device."""

    type = "alarm-not-found"
    title = "Alarm not found"


class TooManyRules(Conflict):
    """The scope already carries ALERT_RULES_PER_SCOPE_MAX rules."""

    type = "too-many-alert-rules"
    title = "Too many alert rules on this scope"


class InvalidCondition(Unprocessable):
    """The condition is well-formed but outside a configured bound."""

    type = "invalid-alert-condition"
    title = "Invalid alert condition"


class AlarmAlreadyCleared(Conflict):
    """A cleared alarm cannot be cleared again."""

    type = "alarm-already-cleared"
    title = "The alarm is already cleared"
